"""Split a drift run into n shards that together compare every recorded interaction once.

A shard is chosen by a stable hash (SHA-256) of the interaction's *request
key*, never by its position: the same request falls in the same shard
whatever file it was recorded in, in whatever order the files are read,
on whatever machine, so n CI jobs (or n Dask tasks) with ``--shard i/n``
cover everything exactly once and nothing twice.

What a shard keeps together, and why:

* By default the key is the replay match key without the address (method,
  path, query as a multiset, the body normalised): what ``diff`` pairs two
  recordings by. Every interaction with one key — the repeats of a request,
  in their recorded order — is in one shard, so pairing old with new, and
  the order in which repeats are compared, are those of an unsharded run.
* With ``--learn-noise`` the key is the endpoint (``GET /products/{id}``):
  noise learned from one request applies to its whole endpoint, so a shard
  keeps whole endpoints and learns what an unsharded run would.

A stateful sequence across different endpoints (create, then read) is not
kept together; ``diff`` does not re-send state-changing requests unless
asked (``--allow-side-effects``), and such a run should not be sharded.

A shard report carries what ``baton report merge`` needs to rebuild the
unsharded report: its index and count, the key, each cassette's
fingerprint (to refuse shards of different recordings), how many
interactions the recording holds (to number what only the new recording
has), and the noise it learned.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.cassettes.model import Interaction
from baton.replay.comparison import endpoint_of
from baton.replay.matching import MatchConfig, match_key

__all__ = ["Shard", "ShardError", "ShardInfo", "cassette_fingerprint"]

_PAIRING = MatchConfig.build(address=False)


class ShardError(ValueError):
    """A shard spec that is not ``i/n`` with 1 <= i <= n."""


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (from 1), by request key or, when noise is learned, endpoint."""

    index: int
    count: int
    by_endpoint: bool = False

    @classmethod
    def parse(cls, text: str, *, by_endpoint: bool = False) -> Shard:
        """``"2/5"`` as a ``Shard``; ``ShardError`` naming the problem otherwise."""
        index, slash, count = text.partition("/")
        try:
            shard = cls(int(index), int(count), by_endpoint)
        except ValueError:
            raise ShardError(
                f"--shard {text!r}: write it as I/N, e.g. 2/5 for the second of five"
            ) from None
        if not slash or not 1 <= shard.index <= shard.count:
            raise ShardError(f"--shard {text!r}: I must be between 1 and N, e.g. 2/5")
        return shard

    @property
    def key_kind(self) -> str:
        return "endpoint" if self.by_endpoint else "request"

    def key(self, interaction: Interaction) -> str:
        """The text the shard is chosen by."""
        request = interaction.request
        if self.by_endpoint:
            return endpoint_of(request.method, request.path)
        return json.dumps(match_key(request, _PAIRING), separators=(",", ":"), default=str)

    def number_of(self, interaction: Interaction) -> int:
        """The shard (1..count) that holds ``interaction``."""
        digest = hashlib.sha256(self.key(interaction).encode("utf-8", "surrogateescape"))
        return int.from_bytes(digest.digest()[:8], "big") % self.count + 1

    def holds(self, interaction: Interaction) -> bool:
        return self.count == 1 or self.number_of(interaction) == self.index


def cassette_fingerprint(path: str | os.PathLike[str], header_end: int) -> dict[str, Any]:
    """Name, size and header digest of a cassette: enough to tell two recordings apart.

    The header holds the time the file was created and its own metadata, so
    two recordings differ in it even when their sizes agree; the size tells a
    file that grew since. Reading the whole file to hash it is left out on
    purpose: a cassette of millions of interactions is read once, by the diff.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        header = handle.read(header_end)
        size = os.fstat(handle.fileno()).st_size
    return {
        "name": path.name,
        "size": size,
        "header_sha256": hashlib.sha256(header).hexdigest(),
    }


@dataclass
class ShardInfo:
    """The shard section of a report: what merging shard reports needs."""

    shard: Shard
    cassettes: list[dict[str, Any]] = field(default_factory=list)
    recorded: int = 0
    """Interactions the recording holds (every one, in or out of the shard)."""
    learn_noise: bool = False
    learned: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.shard.index,
            "count": self.shard.count,
            "key": self.shard.key_kind,
            "cassettes": self.cassettes,
            "recorded": self.recorded,
            "learn_noise": self.learn_noise,
            "learned": self.learned,
        }
