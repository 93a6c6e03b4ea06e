"""``baton export --format pact``: the flags that name consumers, providers and states, and the writing.

Kept apart from ``export.py`` so the HAR and JSON exports stay one screen;
the flags are ``export``'s own (and so its configuration keys).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from baton.cassettes.reader import CassetteReader
from baton.cassettes.wording import plural
from baton.proxy.cli.errors import InputError, user_errors

__all__ = ["PactFlags", "export_pact", "pact_options"]


@dataclass(frozen=True)
class PactFlags:
    consumer: str | None = None
    consumer_header: str | None = None
    consumer_map: tuple[str, ...] = ()
    provider: str | None = None
    provider_state_header: str | None = None
    path_template: tuple[str, ...] = ()


def pact_options(command: Callable[..., None]) -> Callable[..., None]:
    """The pact flags, handed to the command as one ``pact: PactFlags``."""

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        flags = PactFlags(
            consumer=kwargs.pop("consumer"),
            consumer_header=kwargs.pop("consumer_header"),
            consumer_map=kwargs.pop("consumer_map"),
            provider=kwargs.pop("provider"),
            provider_state_header=kwargs.pop("provider_state_header"),
            path_template=kwargs.pop("path_template"),
        )
        command(*args, pact=flags, **kwargs)

    decorators = [
        click.option("--consumer", metavar="NAME", help="pact: the consumer's name."),
        click.option(
            "--consumer-header",
            metavar="HEADER",
            help="pact: take the consumer's name from this request header where present.",
        ),
        click.option(
            "--consumer-map",
            multiple=True,
            metavar="ADDRESS=NAME",
            help="pact: the consumer recorded from this client address (e.g. 10.0.0.7=cart).",
        ),
        click.option(
            "--provider", metavar="NAME", help="pact: the provider's name [default: the host]."
        ),
        click.option(
            "--provider-state-header",
            metavar="HEADER",
            help="pact: a request header whose value is the interaction's provider state.",
        ),
        click.option(
            "--path-template",
            multiple=True,
            metavar="TEMPLATE",
            help="pact: group recordings by this template to tell what varies (as contract infer).",
        ),
    ]
    decorated: Callable[..., None] = with_flags
    for decorator in reversed(decorators):
        decorated = decorator(decorated)
    return decorated


def _addresses(entries: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for entry in entries:
        address, sep, name = entry.partition("=")
        if not sep or not address.strip() or not name.strip():
            raise InputError(
                f"--consumer-map {entry}: write it as ADDRESS=NAME, e.g. 10.0.0.7=cart"
            )
        found[address.strip().strip("[]")] = name.strip()
    return found


def _file_name(consumer: str, provider: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{consumer}-{provider}")
    return f"{safe}.json"


def export_pact(cassette: Path, output: Path | None, flags: PactFlags) -> None:
    """Write one Pact file per consumer/provider pair of ``cassette`` (stdout for one, no -o)."""
    from importlib.metadata import version

    from baton.formats.pact import PactOptions, export_pacts

    options = PactOptions(
        consumer=flags.consumer,
        consumer_header=flags.consumer_header,
        consumer_addresses=_addresses(flags.consumer_map),
        provider=flags.provider,
        provider_state_header=flags.provider_state_header,
        path_templates=flags.path_template,
        baton_version=version("baton-replay"),
    )
    with user_errors(), CassetteReader(cassette, warn_torn=False) as reader:
        result = export_pacts(list(reader), options)
    if not result.pacts:
        raise InputError(f"{cassette}: no HTTP interaction with a response to export")
    # A name that does not end in .json is a folder: click drops a trailing slash.
    folder = output is not None and (output.is_dir() or output.suffix.lower() != ".json")
    if len(result.pacts) > 1 and not folder:
        pairs = ", ".join(f"{c} -> {p}" for c, p in result.pacts)
        raise InputError(
            f"{plural(len(result.pacts), 'consumer/provider pair')} ({pairs}); "
            "give -o a folder for one file each"
        )
    for (consumer, provider), document in result.pacts.items():
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        count = plural(len(document["interactions"]), "interaction")
        if output is None:
            click.echo(text, nl=False)
            click.echo(f"baton: pact {consumer} -> {provider}: {count}", err=True)
            continue
        target = output / _file_name(consumer, provider) if folder else output
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
        click.echo(f"baton: pact {consumer} -> {provider}: {count}, written to {target}", err=True)
    for note in result.notes():
        click.echo(f"baton: note: {note}", err=True)
