"""Short forms of bench/reliability.py's rows (issue 18): the same checks, smaller loads.

The bench runs 200 clients x 50 requests and 20 SIGKILLs; here 20 x 10 and 2,
through the real ``baton record`` and ``baton replay`` processes and the
tests' echo service, which sends back each request's id so a mix-up shows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.reliability import crowd, kill_under_load, lost_and_doubled, recorded_ids
from tests.processes import BatonProcess, Upstream, run_baton


def test_a_crowd_through_record_and_replay_loses_and_mixes_up_nothing(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "crowd.cassette"
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{echo.url}", "--listen-port", "0"
    )
    recorded = crowd(recorder.url, clients=20, per_client=10)
    assert recorder.stop() == 0
    assert recorded.errors == []
    assert len(recorded.answered) == 200
    assert recorded.mismatched == []
    kept = recorded_ids(cassette)
    lost, doubled = lost_and_doubled(recorded.answered, kept)
    assert (lost, doubled) == ([], [])
    assert sum(kept.values()) == 200

    replayer = baton("replay", str(cassette), "--listen-port", "0")
    replayed = crowd(replayer.url, clients=20, per_client=10)
    assert replayer.stop() == 0
    assert replayed.errors == []
    assert len(replayed.answered) == 200
    assert replayed.mismatched == []


def test_sigkill_of_the_recorder_under_load_twice_keeps_every_answer_and_repairs(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    def start_recorder(cassette: Path) -> tuple[str, Callable[[], None]]:
        recorder = baton(
            "record", "-o", str(cassette), "--mode", f"reverse:{echo.url}", "--listen-port", "0"
        )
        return recorder.url, recorder.kill

    def repair(cassette: Path) -> int:
        return run_baton(["repair", str(cassette)]).returncode

    for round_number in range(2):
        outcome = kill_under_load(
            start_recorder, tmp_path / f"killed-{round_number}.cassette", repair, before_kill=60
        )
        assert outcome.answered >= 60
        assert outcome.lost == 0, outcome
        # Only requests in flight at the kill (one per client at most) may be kept unanswered.
        assert outcome.unanswered_kept <= 8, outcome
        assert outcome.repair_code == 0, outcome
        assert outcome.readable_after_repair, outcome
