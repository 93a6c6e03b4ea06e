"""Cassette locations: paths, globs, directories and fsspec URLs, as every reading command takes them."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from baton.cassettes.locations import (
    CassetteSource,
    LocationError,
    expand_locations,
    fetch_source,
    parse_storage_options,
    resolve_cassettes,
)
from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.reader import read_cassette
from baton.cassettes.writer import CassetteWriter
from tests.processes import run_baton


def _write_cassette(path: Path, paths: list[str]) -> None:
    with CassetteWriter(path, redactor=None) as writer:
        for number, url_path in enumerate(paths):
            writer.append(
                Interaction(
                    f"id-{number}",
                    Request("GET", "http", "svc", 80, url_path),
                    Response(
                        200, headers=(("content-type", "text/plain"),), body=url_path.encode()
                    ),
                    1.0,
                )
            )


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    folder.mkdir()
    _write_cassette(folder / "b.0001.cassette", ["/b"])
    _write_cassette(folder / "a.0000.cassette", ["/a"])
    (folder / "notes.txt").write_text("not a cassette")
    return folder


def test_a_glob_expands_to_its_matches_sorted(shards: Path) -> None:
    sources = expand_locations([str(shards / "*.cassette")])
    assert [Path(s.location).name for s in sources] == ["a.0000.cassette", "b.0001.cassette"]
    assert all(not s.remote for s in sources)


def test_a_directory_means_the_cassettes_directly_in_it(shards: Path) -> None:
    names = [p.name for p in resolve_cassettes([shards])]
    assert names == ["a.0000.cassette", "b.0001.cassette"]


def test_a_file_url_is_the_local_file(shards: Path) -> None:
    sources = expand_locations([f"file://{shards}/a.0000.cassette"])
    assert sources == [CassetteSource(f"{shards}/a.0000.cassette", shards / "a.0000.cassette")]


def test_a_plain_missing_path_is_left_to_the_reader(tmp_path: Path) -> None:
    missing = tmp_path / "missing.cassette"
    assert resolve_cassettes([missing]) == [missing]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("nothing-*.cassette", "matches no file"),
        ("memory://baton-nothing/*.cassette", "matches no object"),
        ("nosuchscheme://bucket/x.cassette", "nosuchscheme"),
    ],
)
def test_locations_that_name_nothing_are_one_error(
    tmp_path: Path, argument: str, message: str
) -> None:
    target = argument if "://" in argument else str(tmp_path / argument)
    with pytest.raises(LocationError, match=message):
        expand_locations([target])


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LocationError, match=r"no \*.cassette files"):
        expand_locations([tmp_path])


def test_remote_cassettes_are_copied_once_and_again_when_they_change(
    shards: Path, tmp_path: Path
) -> None:
    memory = fsspec.filesystem("memory")
    memory.put_file(str(shards / "a.0000.cassette"), "/fleet-test/orders/a.0000.cassette")
    memory.put_file(str(shards / "b.0001.cassette"), "/fleet-test/orders/b.0001.cassette")
    cache = tmp_path / "cache"
    sources = expand_locations(["memory://fleet-test/orders/*.cassette"])
    assert [s.location for s in sources] == [
        "memory:///fleet-test/orders/a.0000.cassette",
        "memory:///fleet-test/orders/b.0001.cassette",
    ]
    first = fetch_source(sources[0], cache_dir=cache)
    assert first.read_bytes() == (shards / "a.0000.cassette").read_bytes()
    assert [i.request.path for i in read_cassette(first)] == ["/a"]
    # A copy in the cache is reused while the object is unchanged ...
    first.write_bytes(first.read_bytes())
    stamp = first.stat().st_mtime_ns
    assert fetch_source(sources[0], cache_dir=cache).stat().st_mtime_ns == stamp
    # ... and fetched again when it changed.
    _write_cassette(tmp_path / "new.cassette", ["/a", "/a2"])
    memory.put_file(str(tmp_path / "new.cassette"), "/fleet-test/orders/a.0000.cassette")
    again = fetch_source(sources[0], cache_dir=cache)
    assert [i.request.path for i in read_cassette(again)] == ["/a", "/a2"]
    # A prefix ending in / names the cassettes under it.
    assert len(expand_locations(["memory://fleet-test/orders/"])) == 2


def test_storage_options_are_typed() -> None:
    assert parse_storage_options(
        [
            "anon=true",
            "default_block_size=1024",
            "endpoint_url=http://127.0.0.1:9000",
            'client_kwargs={"region_name": "eu-west-1"}',
        ]
    ) == {
        "anon": True,
        "default_block_size": 1024,
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    with pytest.raises(LocationError, match="expected KEY=VALUE"):
        parse_storage_options(["anon"])


def test_show_reads_a_glob_that_matches_one_cassette_and_refuses_one_that_matches_none(
    shards: Path,
) -> None:
    shown = run_baton(["show", str(shards / "a.*.cassette")])
    assert shown.returncode == 0, shown.stderr
    assert "/a" in shown.stdout
    missing = run_baton(["replay", str(shards / "zzz-*.cassette"), "--listen-port", "0"])
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"baton: error: {shards}/zzz-*.cassette: matches no file"
    ]


def test_lint_export_and_contract_read_globs_directories_and_urls(
    shards: Path, tmp_path: Path
) -> None:
    import json
    import logging

    from click.testing import CliRunner

    from baton.proxy.cli import main

    memory = fsspec.filesystem("memory")
    memory.put_file(str(shards / "a.0000.cassette"), "/fleet-cli/a.0000.cassette")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    env = {"BATON_CACHE_DIR": str(tmp_path / "cache")}
    try:
        runner = CliRunner()
        linted = runner.invoke(main, ["lint", str(shards / "*.cassette")], env=env)
        assert linted.exit_code == 0, linted.output
        exported = runner.invoke(
            main, ["export", "memory://fleet-cli/a.0000.cassette", "--format", "json"], env=env
        )
        assert exported.exit_code == 0, exported.output
        paths = [i["request"]["path"] for i in json.loads(exported.stdout)["interactions"]]
        assert paths == ["/a"]
        inferred = runner.invoke(main, ["contract", "infer", str(shards)], env=env)
        assert inferred.exit_code == 0, inferred.output
        assert "/a:" in inferred.stdout and "/b:" in inferred.stdout
        missing = runner.invoke(main, ["lint", str(shards / "none-*.cassette")], env=env)
        assert missing.exit_code == 2
        assert missing.stderr.strip() == f"baton: error: {shards}/none-*.cassette: matches no file"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
