"""What stateful replay, dynamic and generated values cost the fast path.

    python bench/fidelity_overhead.py [--seconds 5] [--rounds 3] [--paths 50] [--interactions 20000]

Two figures, each with fidelity on (the default) and off (``--no-state
--no-detect-dynamic``):

* requests/s of ``baton replay`` (fast path) under wrk, rotating through N
  recorded ``GET /items/i`` (a cassette written directly, no upstream);
* the CPU time to index a cassette of JSON interactions (a POST with a JSON
  body answered with an id, an ETag and a time), where detection walks every
  answer and request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.writer import CassetteWriter
from baton.replay.dynamic_values import DynamicRules
from baton.replay.index import Index
from bench.load import (
    VENV_BIN,
    free_port,
    rotating_paths_script,
    run_wrk,
    save,
    start_command,
    table,
)

OFF = ["--no-state", "--no-detect-dynamic"]


def _get_cassette(path: Path, paths: int) -> None:
    with CassetteWriter(path, redactor=None) as writer:
        for n in range(paths):
            body = json.dumps({"id": n, "name": f"item {n}", "price": n * 3}).encode()
            writer.append(
                Interaction(
                    f"i{n}",
                    Request("GET", "http", "127.0.0.1", 80, f"/items/{n}"),
                    Response(200, "OK", headers=(("Content-Type", "application/json"),), body=body),
                    time.time(),
                    1.0,
                )
            )


def _json_interactions(count: int) -> list[Interaction]:
    return [
        Interaction(
            f"j{n}",
            Request(
                "POST",
                "http",
                "api",
                80,
                f"/items/{n}",
                headers=(("Content-Type", "application/json"),),
                body=json.dumps({"n": n, "name": "thing", "tags": ["a", "b"]}).encode(),
            ),
            Response(
                200,
                "OK",
                headers=(("Content-Type", "application/json"), ("ETag", f'"e{n:08d}"')),
                body=json.dumps(
                    {"id": f"item-{n:06d}", "n": n, "created_at": "2026-01-01T00:00:00Z"}
                ).encode(),
            ),
            1.7e9 + n,
        )
        for n in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", type=int, default=50)
    parser.add_argument("--interactions", type=int, default=20000)
    args = parser.parse_args()

    rows = []
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        cassette = Path(folder) / "items.cassette"
        _get_cassette(cassette, args.paths)
        script = rotating_paths_script([f"/items/{n}" for n in range(args.paths)], Path(folder))
        for label, extra in (("fidelity on (default)", []), ("fidelity off", OFF)):
            rates = []
            for _ in range(args.rounds):
                port = free_port()
                server = start_command(
                    "baton replay",
                    [
                        str(VENV_BIN / "baton"),
                        "replay",
                        str(cassette),
                        "--listen-port",
                        str(port),
                        "-q",
                        *extra,
                    ],
                    port,
                    probe_path="/items/0",
                )
                try:
                    result = run_wrk(server.url + "/", args.seconds, script=script)
                    rates.append(result.requests_per_second)
                finally:
                    server.stop()
            rows.append([label, f"{statistics.median(rates):,.0f} req/s"])
            results[label] = {"requests_per_second": statistics.median(rates)}

    interactions = _json_interactions(args.interactions)
    for label, options in (
        ("fidelity on (default)", {}),
        ("fidelity off", {"state": False, "dynamic": DynamicRules(detect=False, generated=False)}),
    ):
        times = []
        for _ in range(args.rounds):
            start = time.process_time()
            Index(interactions, **options)  # type: ignore[arg-type]
            times.append(time.process_time() - start)
        rows.append(
            [f"index {args.interactions:,} JSON interactions, {label}", f"{min(times):.2f} s CPU"]
        )
        results[f"load {label}"] = {"cpu_seconds": min(times)}
    print(table(rows, ["what", "figure"]))
    save("fidelity_overhead", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
