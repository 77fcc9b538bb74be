"""bench/bench_update.py end to end at its smallest size: a real controller process, a real
`edgewise-agent` daemon and the raw MQTT baseline on the tests' Mosquitto; 1 MiB, one repeat.
Checks what the benchmark reports, never how fast it was."""

from __future__ import annotations

from pathlib import Path

from bench.bench_update import run
from simulator.broker import BrokerProcess


def test_the_1_mib_update_is_timed_against_raw_mqtt(fresh_broker: BrokerProcess,
                                                     tmp_path: Path) -> None:
    result = run([1.0], 1, tmp_path / "work", timeout=60, say=lambda _: None,
                 broker=fresh_broker, cache_dir=tmp_path / "models")

    (row,) = result["sizes"]
    assert row["chunks"] == 16 and row["bytes"] > 1_000_000
    (update,) = row["runs"]
    # the agent reported every step of the update, in order, the new version last
    states = update["states_s"]
    order = ["downloading", "first_chunk", "verifying", "staged", "activating", "active"]
    assert [s for s in order if s in states] == order
    assert [states[s] for s in order] == sorted(states[s] for s in order)
    assert update["version"] == 2  # the warm-up update was version 1
    # the split accounts for the total, and the raw baseline moved every byte
    assert row["chunk_stream_s"] > 0 and row["verify_s"] > 0 and row["load_smoke_s"] > 0
    assert row["first_chunk_s"] + row["chunk_stream_s"] + row["verify_s"] + \
        row["load_smoke_s"] <= row["update_total_s_best"] + 0.01
    assert row["raw_pipelined_s"] > 0 and row["raw_one_at_a_time_s"] > 0
    assert row["ratio_update_vs_raw"] > 0
