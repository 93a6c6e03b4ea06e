"""Cassettes: open + index time, file size and peak memory, baton vs VCR.py YAML and JSON.

    python bench/cassette_load.py [--sizes 1000,10000,100000] [--rounds 3]

The same traffic (GET /items/N with 1 KB JSON answers and ordinary headers)
is written as a baton cassette and as VCR.py cassettes (YAML and JSON, with
VCR.py's own serializers). Each load runs in a fresh process so its peak
memory is its own:

* baton: read the cassette and build the replay ``Index`` (what `baton
  replay` and the pytest fixture do before serving);
* VCR.py: ``Cassette.load`` (parse, then build its request/response
  objects; VCR.py matches by scanning, so there is no index to build).

VCR.py YAML at the largest size runs once (it takes close to a minute).

baton is measured three ways on the same file, side by side: as `baton
replay` opens it now (from the trailing index record, format 3, response
bodies left in the file), with that record cut off (``baton, scanned``:
every interaction read and checked, as for a file a killed recorder left),
and the way it was opened before the index record (``baton, full read
(before)``: ``read_cassette`` then the ``Index``, every body in memory).
``--large`` (default 1,000,000) adds that many interactions for baton only,
one round: VCR.py at a million would take many minutes (its YAML loads at
about 5k interactions/s here) and is left out; extrapolate its 100k row
linearly. Each load also reports its CPU seconds, which a shared machine
disturbs less than wall-clock time.

Cassette size (``size_table``): the same traffic written with ``--compress
zstd`` as well, every file's size against VCR.py YAML, and each file
compressed whole with ``zstd -3`` for reference (what git, a tarball or a
compressing filesystem would make of it). Its figures, at the largest size,
go to the results' ``figures``: ``size_vs_vcr_yaml`` (baton's default, plain
bodies), ``size_zstd_vs_vcr_yaml`` (``--compress zstd``) and
``size_vs_vcr_yaml_both_zstd`` (baton's default and the YAML, each through
``zstd -3``). ``--quick`` runs 1,000 and 10,000 interactions, one round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteWriter, Interaction, Request, Response
from baton.cassettes.compression import BodyCompression
from baton.cassettes.trailing_index import index_record_start
from bench.load import save, table
from bench.upstream import BODY

REQUEST_HEADERS = (
    ("Host", "api.example.test"),
    ("Accept", "application/json"),
    ("User-Agent", "bench/1.0"),
)
RESPONSE_HEADERS = (
    ("Content-Type", "application/json"),
    ("Server", "uvicorn"),
    ("Date", "Tue, 24 Nov 2026 12:00:00 GMT"),
)

LOADERS = {
    "baton": (
        "from baton.replay.options import ReplayOptions\n"
        "index = ReplayOptions().load([PATH], address=False)\n"
        "count = len(index)\n"
    ),
    "baton, full read (before)": (
        "from baton.replay.options import ReplayOptions, collector_paused\n"
        "from baton.cassettes.reader import read_cassette\n"
        "with collector_paused():\n"
        "    index = ReplayOptions().index(read_cassette(PATH), address=False)\n"
        "count = len(index)\n"
    ),
    "VCR.py YAML": (
        "from vcr.cassette import Cassette\n"
        "from vcr.serializers import yamlserializer\n"
        "cassette = Cassette.load(path=str(PATH), serializer=yamlserializer, record_mode='none')\n"
        "count = len(cassette)\n"
    ),
    "VCR.py JSON": (
        "from vcr.cassette import Cassette\n"
        "from vcr.serializers import jsonserializer\n"
        "cassette = Cassette.load(path=str(PATH), serializer=jsonserializer, record_mode='none')\n"
        "count = len(cassette)\n"
    ),
}

# VmHWM, not ru_maxrss: Linux hands a child its parent's ru_maxrss at fork,
# while VmHWM belongs to the process's own address space.
MEASURE = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
PATH = Path({path!r})
import baton.cassettes, baton.replay.options, vcr.cassette, vcr.serializers.yamlserializer  # imports are not the load
def high_water():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
before = high_water()
start, cpu = time.perf_counter(), time.process_time()
{loader}
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(seconds, count, high_water() - before, cpu)
"""


def interactions(count: int) -> list[Interaction]:
    return list(each_interaction(count))


def each_interaction(count: int) -> Iterator[Interaction]:
    for n in range(1, count + 1):
        body = b'{"path": "/items/%d", ' % n + BODY[1:]
        yield (
            Interaction(
                str(n),
                Request(
                    "GET",
                    "https",
                    "api.example.test",
                    443,
                    f"/items/{n}",
                    (),
                    "HTTP/1.1",
                    REQUEST_HEADERS,
                ),
                Response(
                    200,
                    "OK",
                    "HTTP/1.1",
                    (*RESPONSE_HEADERS, ("Content-Length", str(len(body)))),
                    body,
                ),
                1.7e9 + n,
                3.0,
            )
        )


def write_all(folder: Path, count: int) -> dict[str, Path]:
    from vcr.serializers import jsonserializer, yamlserializer

    items = interactions(count)
    baton = folder / f"c{count}.cassette"
    with CassetteWriter(baton, redactor=None) as writer:
        for item in items:
            writer.append(item)
    data = {
        "version": 1,
        "interactions": [
            {
                "request": {
                    "body": None,
                    "headers": {k: [v] for k, v in i.request.headers},
                    "method": i.request.method,
                    "uri": i.request.url,
                },
                "response": {
                    "status": {"code": i.response.status, "message": i.response.reason},
                    "headers": {k: [v] for k, v in i.response.headers},
                    "body": {"string": i.response.body.decode()},
                },
            }
            for i in items
            if i.response is not None
        ],
    }
    yaml_path, json_path = folder / f"c{count}.yaml", folder / f"c{count}.json"
    yaml_path.write_text(yamlserializer.serialize(data))
    json_path.write_text(jsonserializer.serialize(data))
    return {"baton": baton, "VCR.py YAML": yaml_path, "VCR.py JSON": json_path}


def whole_file_zstd_bytes(path: Path) -> int:
    """The size of ``path`` compressed whole with ``zstd -3`` (the zstd tool, else the library)."""
    tool = shutil.which("zstd")
    if tool:
        out = subprocess.run([tool, "-3", "-c", "-q", str(path)], capture_output=True, check=True)
        return len(out.stdout)
    import zstandard

    return len(zstandard.ZstdCompressor(level=3).compress(path.read_bytes()))


def size_table(
    folder: Path, count: int, files: dict[str, Path], rounds: int
) -> tuple[list[list[str]], dict[str, dict[str, float]]]:
    """Sizes of the same traffic: baton plain and ``--compress zstd``, VCR.py YAML and JSON.

    Also how long the compressed cassette takes to open and index (its bodies
    are decoded as it is read), next to the plain one's.
    """
    compressed = folder / f"c{count}.zstd.cassette"
    with CassetteWriter(compressed, redactor=None, compression=BodyCompression()) as writer:
        for item in interactions(count):
            writer.append(item)
    sized = {"baton": files["baton"], "baton --compress zstd": compressed}
    sized |= {name: path for name, path in files.items() if name != "baton"}
    yaml_bytes = files["VCR.py YAML"].stat().st_size
    yaml_zstd = whole_file_zstd_bytes(files["VCR.py YAML"])
    rows, out = [], {}
    for name, path in sized.items():
        size, whole = path.stat().st_size, whole_file_zstd_bytes(path)
        out[name] = {
            "file_mb": size / 1e6,
            "vs_vcr_yaml": size / yaml_bytes,
            "zstd_3_mb": whole / 1e6,
            "zstd_3_vs_vcr_yaml_zstd_3": whole / yaml_zstd,
        }
        if name == "baton --compress zstd":
            runs = [measure(LOADERS["baton"], path) for _ in range(rounds)]
            out[name]["open_seconds"] = statistics.median(r[0] for r in runs)
        rows.append(
            [
                f"{count:,}",
                name,
                f"{size / 1e6:.1f}",
                f"{size / yaml_bytes:.2f}x",
                f"{whole / 1e6:.2f}",
                f"{whole / yaml_zstd:.2f}x",
            ]
        )
    return rows, out


def without_index_record(path: Path) -> Path:
    """A copy of the cassette with its trailing index record cut off: opened by scanning."""
    data = path.read_bytes()
    start = index_record_start(lambda length, offset: data[offset : offset + length], len(data))
    if start is None:
        raise SystemExit(f"{path}: no trailing index record to cut")
    stripped = path.with_suffix(".scan.cassette")
    stripped.write_bytes(data[:start])
    return stripped


def write_baton_only(folder: Path, count: int) -> Path:
    path = folder / f"c{count}.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        for item in each_interaction(count):
            writer.append(item)
    return path


def measure(loader: str, path: Path) -> tuple[float, int, int, float]:
    code = MEASURE.format(
        root=str(Path(__file__).resolve().parent.parent), path=str(path), loader=loader
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True
    )
    seconds, count, peak_kib, cpu = out.stdout.split()
    return float(seconds), int(count), int(peak_kib), float(cpu)


def load_rows(
    results: dict[str, dict[str, object]],
    size: int,
    files: dict[str, Path],
    rounds: int,
    largest: int,
) -> list[list[str]]:
    """Open + index each file in fresh processes; its rows, and its results by name and size."""
    rows = []
    baton_seconds = None
    for name, path in files.items():
        runs_wanted = 1 if name == "VCR.py YAML" and size == largest >= 100_000 else rounds
        runs = [measure(LOADERS.get(name, LOADERS["baton"]), path) for _ in range(runs_wanted)]
        if any(run[1] != size for run in runs):
            raise SystemExit(f"{name} loaded {runs[0][1]} of {size} interactions")
        seconds = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[3] for r in runs)
        peak_mib = max(r[2] for r in runs) / 1024
        baton_seconds = seconds if name == "baton" else baton_seconds
        size_mb = path.stat().st_size / 1e6
        results[f"{name} {size}"] = {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "file_mb": size_mb,
            "peak_mib": peak_mib,
            "rounds": runs_wanted,
        }
        ratio = seconds / baton_seconds if baton_seconds else 1.0
        rows.append(
            [
                f"{size:,}",
                name,
                f"{seconds:.3f}",
                f"{cpu:.3f}",
                f"{ratio:.1f}x",
                f"{size_mb:.1f}",
                f"{peak_mib:.0f}",
            ]
        )
        print(f"{size:,} {name}: {seconds:.3f} s ({cpu:.3f} s CPU)", flush=True)
    return rows


def load_figures(results: dict[str, dict[str, object]]) -> dict[str, float | None]:
    """The headline open + index figures (None where the run did not measure that size)."""

    def figure(name: str, field: str, scale: float = 1.0) -> float | None:
        found = results.get(name)
        return None if found is None else float(found[field]) * scale  # type: ignore[arg-type]

    mb = 1.048576  # MiB -> MB
    return {
        "open_index_100k_s": figure("baton 100000", "seconds"),
        "open_index_1m_s": figure("baton 1000000", "seconds"),
        "open_index_100k_scan_s": figure("baton, scanned 100000", "seconds"),
        "open_index_100k_before_s": figure("baton, full read (before) 100000", "seconds"),
        "open_index_100k_cpu_s": figure("baton 100000", "cpu_seconds"),
        "open_index_100k_before_cpu_s": figure("baton, full read (before) 100000", "cpu_seconds"),
        "rss_100k_mb": figure("baton 100000", "peak_mib", mb),
        "rss_100k_before_mb": figure("baton, full read (before) 100000", "peak_mib", mb),
        "rss_1m_mb": figure("baton 1000000", "peak_mib", mb),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--large",
        type=int,
        default=1_000_000,
        help="interactions of the baton-only case, one round (0: none)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 and 10,000 interactions, one round; --large 100,000",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.large = "1000,10000", 1, 100_000
    sizes = [int(s) for s in args.sizes.split(",")]
    largest = max(sizes)
    results: dict[str, dict[str, object]] = {}
    rows = []
    size_rows: list[list[str]] = []
    sizes_by_count: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            files = write_all(Path(scratch), size)
            more_rows, sizes_by_count[size] = size_table(Path(scratch), size, files, args.rounds)
            size_rows += more_rows
            files = {
                "baton": files["baton"],
                "baton, scanned": without_index_record(files["baton"]),
                "baton, full read (before)": files["baton"],
                **{name: path for name, path in files.items() if name != "baton"},
            }
            rows += load_rows(results, size, files, args.rounds, largest)
        if args.large and args.large not in sizes:
            baton = write_baton_only(Path(scratch), args.large)
            files = {"baton": baton, "baton, scanned": without_index_record(baton)}
            files["baton, full read (before)"] = baton
            rows += load_rows(results, args.large, files, 1, largest)
    print()
    print(
        f"open + index, medians of {args.rounds} (VCR.py YAML at {largest:,} and "
        f"everything at {args.large:,}: 1 run)"
    )
    print(
        table(
            rows,
            ["interactions", "format", "seconds", "CPU s", "vs baton", "file MB", "peak MiB"],
        )
    )
    print()
    print("cassette size, same traffic (zstd -3: each file compressed whole, for reference)")
    print(
        table(
            size_rows,
            ["interactions", "format", "file MB", "vs YAML", "zstd -3 MB", "vs YAML zstd -3"],
        )
    )
    at_largest = sizes_by_count[largest]
    figures = {
        **load_figures(results),
        "size_vs_vcr_yaml": at_largest["baton"]["vs_vcr_yaml"],
        "size_zstd_vs_vcr_yaml": at_largest["baton --compress zstd"]["vs_vcr_yaml"],
        "size_vs_vcr_yaml_both_zstd": at_largest["baton"]["zstd_3_vs_vcr_yaml_zstd_3"],
    }
    path = save(
        "cassette_load",
        {
            "settings": vars(args),
            "results": results,
            "sizes": {str(k): v for k, v in sizes_by_count.items()},
            "figures": figures,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
