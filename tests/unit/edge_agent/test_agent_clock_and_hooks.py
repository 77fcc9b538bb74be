"""What whoever runs an agent injects: its wall clock, its small-I/O pool, the update test
hook. No broker: the agent is built, not started (building touches no disk)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.update import UpdateState
from edge_agent.update.pause import UpdatePause


def build(tmp_path: Path, **kwargs: Any) -> EdgeAgent:
    return EdgeAgent(AgentConfig(device_id="clocked", data_dir=tmp_path / "dev"), **kwargs)


def test_records_and_the_update_step_are_stamped_by_the_injected_clock(tmp_path: Path) -> None:
    agent = build(tmp_path, clock=lambda: 1_234.5)
    agent.feedback("unknown-1", "setosa")
    agent._record_error("invalid_input")
    records = [json.loads(body) for body in _bodies(agent)]
    assert [r["ts"] for r in records] == [1_234.5, 1_234.5]
    assert agent.updater.step.entered_at == 1_234.5
    assert not (tmp_path / "dev").exists()


def test_an_agent_shares_the_pool_it_is_given_and_owns_one_otherwise(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        shared = build(tmp_path, small_io=pool)
        assert shared.updater.small_io is pool
        shared.kill()  # closing the agent leaves a pool it was given running
        assert pool.submit(lambda: 7).result() == 7
    own = build(tmp_path)
    assert own.updater.small_io is not None and own.updater.small_io is not pool


def test_the_pause_hook_reaches_the_updater_and_is_off_by_default(tmp_path: Path) -> None:
    assert build(tmp_path).updater.parking.pause is None
    hooked = build(tmp_path, pause=UpdatePause(UpdateState.STAGED))
    assert hooked.updater.parking.pause == UpdatePause(UpdateState.STAGED)
    assert not hooked.updater.paused


def _bodies(agent: EdgeAgent) -> list[str]:
    from edge_agent.telemetry.records import encode_pending

    return encode_pending(list(agent._pending_records), "boot")
