"""Where cassettes are: paths, globs, directories and fsspec URLs, turned into files to read.

Every command that reads cassettes takes its arguments through here, so
``baton replay 's3://bucket/orders/*.cassette'`` works like
``baton replay recordings/*.cassette`` — and so does a Dask worker handed the
same URLs (``resolve_cassettes`` is a plain function with no CLI in it).

Why remote cassettes are copied to a local cache rather than streamed: the
reader needs a seekable file for stored bodies (``StoredBody`` names byte
ranges that are read back later, piece by piece), and replay reads a cassette
more than once (index, then bodies). A copy is made once per object version:
the cache key is the URL, and a copy is reused only while the object's size
and ETag (or modification time) are the same. Copies are written to a
temporary name and renamed, so a reader never sees half a download.

A cassette still cannot point at other files: a stored body is always read
from the file it was found in, whichever way that file arrived here.

A glob or a directory that matches nothing is a ``LocationError`` (the CLI
turns it into one line and exit 2): replaying zero cassettes because of a typo
would answer every request with a miss.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.cassettes.errors import CassetteError

__all__ = [
    "CassetteSource",
    "LocationError",
    "default_cache_dir",
    "expand_locations",
    "fetch_source",
    "filesystem_for",
    "is_url",
    "parse_storage_options",
    "resolve_cassettes",
]

_GLOB_MAGIC = re.compile(r"[*?\[]")
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class LocationError(CassetteError):
    """A cassette location that names nothing readable: no match, no such object, no driver."""


@dataclass(frozen=True, slots=True)
class CassetteSource:
    """One cassette to read: a local file, or an object behind an fsspec URL.

    ``location`` is what to show a person (the path, or the full URL);
    ``local`` is set for files already on this machine.
    """

    location: str
    local: Path | None = None

    @property
    def remote(self) -> bool:
        """True when the cassette must be copied here before it can be read."""
        return self.local is None


def is_url(text: str) -> bool:
    """True for ``scheme://...`` (``s3://``, ``gcs://``, ``file://``, ``memory://``)."""
    return _URL.match(text) is not None


def default_cache_dir() -> Path:
    """Where copies of remote cassettes go: ``$BATON_CACHE_DIR`` or the user cache dir."""
    explicit = os.environ.get("BATON_CACHE_DIR")
    if explicit:
        return Path(explicit) / "remote"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "baton" / "remote"


def parse_storage_options(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--storage-option``) as fsspec keyword arguments.

    ``true``/``false`` become booleans and whole numbers integers, since
    fsspec's options (``anon``, ``use_ssl``, ``default_block_size``) are typed;
    a value that is JSON (``client_kwargs={"region_name": "eu-west-1"}``) is
    decoded. Anything else stays a string.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise LocationError(
                f"--storage-option {item!r}: expected KEY=VALUE (e.g. anon=true, "
                "endpoint_url=http://127.0.0.1:9000)"
            )
        options[key] = _option_value(value.strip())
    return options


def _option_value(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def expand_locations(
    arguments: Iterable[str | os.PathLike[str]],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[CassetteSource]:
    """Each argument as the cassettes it names, in argument order, each glob's matches sorted.

    A local path that exists is taken as it is (a directory: the
    ``*.cassette`` files directly in it); a path with glob characters that
    does not exist literally is a glob; ``file://`` is a local path; any other
    URL goes to fsspec. A glob or directory matching nothing raises
    ``LocationError``. A plain path that does not exist is passed on: the
    reader then says "no such file" in its usual words.
    """
    sources: list[CassetteSource] = []
    for argument in arguments:
        text = os.fspath(argument)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if is_url(text):
            sources.extend(_expand_url(text, dict(storage_options or {})))
        else:
            sources.extend(_expand_local(text))
    return sources


def _expand_local(text: str) -> list[CassetteSource]:
    path = Path(text)
    if path.is_dir():
        found = sorted(p for p in path.glob("*.cassette") if p.is_file())
        if not found:
            raise LocationError(f"{text}: a directory with no *.cassette files in it")
        return [CassetteSource(str(p), p) for p in found]
    if path.exists() or not _GLOB_MAGIC.search(text):
        return [CassetteSource(text, path)]
    matches = sorted(m for m in glob.glob(text, recursive=True) if Path(m).is_file())
    if not matches:
        raise LocationError(f"{text}: matches no file")
    return [CassetteSource(m, Path(m)) for m in matches]


def filesystem_for(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """fsspec's filesystem for ``url`` and the path inside it, or a ``LocationError``."""
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:  # pragma: no cover - fsspec is a core dependency
        raise LocationError(f"{url}: reading URLs needs fsspec (pip install fsspec)") from exc
    try:
        fs, path = url_to_fs(url, **storage_options)
    except ImportError as exc:
        scheme = url.split("://", 1)[0]
        extra = " (pip install 'baton-replay[fleet]')" if scheme in ("s3", "s3a") else ""
        raise LocationError(f"{url}: no driver for {scheme}:// installed{extra}: {exc}") from exc
    except ValueError as exc:
        raise LocationError(f"{url}: {exc}") from exc
    except TypeError as exc:
        raise LocationError(f"{url}: a storage option is not accepted: {exc}") from exc
    return fs, str(path)


def _expand_url(url: str, storage_options: dict[str, Any]) -> list[CassetteSource]:
    fs, path = filesystem_for(url, storage_options)
    try:
        if _GLOB_MAGIC.search(path):
            found = sorted(str(p) for p in fs.glob(path))
            if not found:
                raise LocationError(f"{url}: matches no object")
        elif url.endswith("/") or fs.isdir(path):
            found = sorted(str(p) for p in fs.glob(path.rstrip("/") + "/*.cassette"))
            if not found:
                raise LocationError(f"{url}: no *.cassette objects under this prefix")
        else:
            found = [path]
    except LocationError:
        raise
    except Exception as exc:  # a network, credential or permission failure of the store
        raise LocationError(f"{url}: cannot list: {_reason(exc)}") from exc
    return [CassetteSource(fs.unstrip_protocol(p)) for p in found]


def _reason(exc: BaseException) -> str:
    """An exception in one line, with its type when the message is empty or terse."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def fetch_source(
    source: CassetteSource,
    *,
    cache_dir: Path | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Path:
    """A local file holding ``source``: the file itself, or an up-to-date copy in the cache."""
    if source.local is not None:
        return source.local
    url = source.location
    fs, path = filesystem_for(url, dict(storage_options or {}))
    try:
        info = fs.info(path)
    except FileNotFoundError as exc:
        raise LocationError(f"{url}: no such object") from exc
    except Exception as exc:
        raise LocationError(f"{url}: cannot read: {_reason(exc)}") from exc
    version = {
        "url": url,
        "size": info.get("size"),
        "etag": str(info.get("ETag") or info.get("etag") or info.get("mtime") or ""),
    }
    root = cache_dir or default_cache_dir()
    folder = root / hashlib.sha256(url.encode()).hexdigest()[:24]
    name = _SAFE_NAME.sub("_", path.rstrip("/").rsplit("/", 1)[-1]) or "cassette"
    local = folder / name
    stamp = folder / (name + ".source.json")
    try:
        if local.is_file() and json.loads(stamp.read_text()) == version:
            return local
    except (OSError, ValueError):
        pass  # no copy yet, or a stamp from an interrupted run: download again
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.{os.getpid()}.partial"
    try:
        fs.get_file(path, str(partial))
        os.replace(partial, local)
        stamp.write_text(json.dumps(version))
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise LocationError(f"{url}: cannot download: {_reason(exc)}") from exc
    return local


def resolve_cassettes(
    arguments: Iterable[str | os.PathLike[str]],
    *,
    cache_dir: Path | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Local files for every cassette the arguments name (globs and URLs expanded, copies made)."""
    return [
        fetch_source(source, cache_dir=cache_dir, storage_options=storage_options)
        for source in expand_locations(arguments, storage_options=storage_options)
    ]
