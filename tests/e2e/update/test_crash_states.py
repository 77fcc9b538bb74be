"""SIGKILL the daemon in every update state; after a restart it serves at once and finishes.

The agent's test hook (``EDGEWISE_AGENT_PAUSE_IN``) parks an update right after the agent
persisted the step for a state; the test then kills the process with SIGKILL, checks what a
crash would leave on disk, and starts the daemon again without the hook. Whatever the state, the
device must answer predictions with v1 or v2 (never none), its pointer must name a complete file
whose sha256 matches, and the update must come to rest as the resume map says: v2 committed, or
v1 again after a rollback.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgewise_wire import ProbationPolicy
from simulator.broker import BrokerProcess
from tests.e2e.update.conftest import Models
from tests.harness.agents import (
    AgentProcess,
    Artifact,
    Controller,
    Signer,
    check_slots,
    copy_data_dir,
    device,
    retained_reported,
    same_ref,
    serving_version,
)
from tests.harness.waiting import holds_for, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


@dataclass(frozen=True)
class CrashCase:
    hook: str  # EDGEWISE_AGENT_PAUSE_IN
    state: str  # what the agent writes to paused-in
    rollback: str | None = None  # None: v1 -> v2; "order" or "probation": back to v1


CASES = {
    "downloading": CrashCase("downloading:2", "downloading"),
    "verifying": CrashCase("verifying", "verifying"),
    "staged": CrashCase("staged", "staged"),
    "activating": CrashCase("activating", "activating"),
    "probation": CrashCase("probation", "probation"),
    "rolling_back-order": CrashCase("rolling_back", "rolling_back", rollback="order"),
    "rolling_back-probation": CrashCase("rolling_back", "rolling_back", rollback="probation"),
}

# the hook parks probation, so a short window is enough for the test to catch it
PROBATION = ProbationPolicy(duration_s=2.0)
# a window no model can pass: every prediction is slower than a tenth of a microsecond
FAILING_PROBATION = ProbationPolicy(duration_s=2.0, max_p95_latency_ms=0.0001, min_predictions=1)


@pytest.fixture(scope="module")
def v2_over_v1_data_dir(broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
                        tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir where the daemon went v1 -> v2 and keeps v1 in its previous slot."""
    workdir = tmp_path_factory.mktemp("template-v2")
    with device(workdir, broker.address, signer) as (agent, ctl):
        copy_data_dir(v1_data_dir, agent)
        ctl.serve(models.v2)
        ctl.publish_desired(signer.desired(models.v2, "dep-template-v2"))
        agent.start()
        ctl.wait_reported(lambda r: r.state == "active" and same_ref(r.active, models.v2), 30,
                          "v2 active on the template device")
        agent.stop()
    view = check_slots(agent.data_dir)
    assert view.active == models.v2.ref and view.previous == models.v1.ref
    return agent.data_dir


class Predictor(threading.Thread):
    """Single-row predictions in a loop (feeds a probation window); answers are not judged."""

    def __init__(self, agent: AgentProcess, rows: list[list[float]]) -> None:
        super().__init__(daemon=True)
        self.agent, self.rows = agent, rows
        self.stop_event = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{self.agent.http_port}", timeout=5) as c:
            while not self.stop_event.is_set():
                try:
                    c.post("/v1/predict", json={"features": self.rows[0]})
                except httpx.HTTPError:
                    time.sleep(0.05)

    def __enter__(self) -> Predictor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.join(10)


def _assert_serves_one_of(agent: AgentProcess, models: Models, *allowed: Artifact) -> int:
    """Serving right now (health and a real prediction), with one of the allowed versions."""
    health = agent.health()
    assert health["serving"] is True, f"the agent serves no model: {health}"
    version = serving_version(agent, models.rows[:3])
    assert version in {a.manifest.version for a in allowed}, version
    return version


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_in_update_state_then_restart_serves_and_finishes(
        case: str, broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        v2_over_v1_data_dir: Path, tmp_path: Path) -> None:
    spec = CASES[case]
    with device(tmp_path, broker.address, signer) as (agent, ctl):
        if spec.rollback == "order":
            # v2 runs, v1 waits in the previous slot: a signed order goes back to it
            copy_data_dir(v2_over_v1_data_dir, agent)
            desired = signer.desired(models.v1, "dep-rollback",
                                     rollback_to=(agent.device_id, "iris", 1))
        else:
            copy_data_dir(v1_data_dir, agent)
            policy = PROBATION if spec.state == "probation" else None
            if spec.rollback == "probation":
                policy = FAILING_PROBATION
            desired = signer.desired(models.v2, "dep-v2", probation=policy)
        ctl.serve(models.v1, models.v2)
        ctl.publish_desired(desired)

        agent.start(pause_in=spec.hook)
        if spec.rollback == "probation":
            with Predictor(agent, models.rows):  # the window needs predictions to judge
                agent.wait_paused(spec.state)
        else:
            agent.wait_paused(spec.state)
        parked = ctl.wait_reported(lambda r: r.state == spec.state, 10,
                                   f"the reported state {spec.state!r}")
        if spec.state == "staged":
            assert parked.staged == models.v2.ref, parked  # verified, waiting beside v1
            assert same_ref(parked.active, models.v1), parked
        if spec.state == "probation":
            assert same_ref(parked.active, models.v2), parked  # serving, not yet committed
        _assert_serves_one_of(agent, models, models.v1, models.v2)  # parked, yet serving
        agent.kill()

        view = check_slots(agent.data_dir)  # what the crash left: a sound pointer
        assert view.active in (models.v1.ref, models.v2.ref)
        agent.paused_file.unlink()
        since = time.monotonic()
        agent.start()
        _assert_serves_one_of(agent, models, models.v1, models.v2)  # at once after the restart

        if spec.rollback is None:
            expected, kept, rest = models.v2, models.v1, {"active"}
        elif spec.rollback == "order":
            # the controller desires v1, which serves again: once the retained desired state
            # is seen again (this restart), "active" is as right as "rolled_back"
            expected, kept, rest = models.v1, None, {"rolled_back", "active"}
        else:
            expected, kept, rest = models.v1, None, {"rolled_back"}
        final = ctl.wait_reported(
            lambda r: r.state in rest and same_ref(r.active, expected), 20,
            f"{expected.ref} serving in state {sorted(rest)} after the crash in {spec.state}",
            since=since)
        if kept is not None:
            assert final.previous == kept.ref, "the model before the update is the rollback slot"
        assert serving_version(agent, models.rows[:5]) == expected.manifest.version
        retained = retained_reported(broker.address, agent.device_id)
        assert retained.state in rest and same_ref(retained.active, expected), retained
        view = check_slots(agent.data_dir)
        assert view.active == expected.ref
        if kept is not None:
            assert view.previous == kept.ref, "the model before the update is kept for a rollback"
        assert agent.paused_in() is None
        _assert_no_leftovers(agent, expected)
        if spec.hook.startswith("downloading"):
            _assert_download_resumed(ctl, models.v2)


def _assert_no_leftovers(agent: AgentProcess, active: Artifact) -> None:
    """No temporary pointer and no partial download is left once the update is at rest."""
    data = agent.data_dir
    assert not list(data.glob("*.tmp")), list(data.glob("*.tmp"))
    download = data / "download"
    parts = list(download.glob("*.part")) if download.exists() else []
    assert parts == [], f"partial downloads left after the update finished: {parts}"
    assert (data / "models" / f"{active.sha256}.onnx").is_file()


def _assert_download_resumed(ctl: Controller, artifact: Artifact) -> None:
    """The restarted agent asked only for what it did not have: chunk 0 came once."""
    served = ctl.served(artifact.sha256)
    count = artifact.manifest.artifact.chunk_count
    assert served[0] == 1 and served[1] == 1, f"chunks served again after the restart: {served}"
    assert sum(served.values()) < 2 * count, f"downloaded again from the start: {served}"


def test_crash_loop_in_activating_ends_rolled_back_not_looping(
        broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        tmp_path: Path) -> None:
    """The hook stays set on every restart, as a model that crashes the process would: the
    attempt cap ends the loop with v1 serving, and a further restart does not try again."""
    with device(tmp_path, broker.address, signer) as (agent, ctl):
        copy_data_dir(v1_data_dir, agent)
        ctl.serve(models.v2)
        ctl.publish_desired(signer.desired(models.v2, "dep-v2"))
        outcome = None
        for _ in range(5):  # the first start and up to four restarts
            since = time.monotonic()
            agent.start(pause_in="activating")

            def parked_or_rest(since: float = since) -> str | None:
                if agent.paused_in() == "activating":
                    return "paused"
                last = ctl.reports(since)
                if last and last[-1].state in ("failed", "rolled_back"):
                    return last[-1].state
                return None

            outcome = wait_for(parked_or_rest, 20, lambda: f"start {agent.starts}: a pause in "
                               f"activating or a rollback; log:\n{agent.log_text()[-2500:]}")
            _assert_serves_one_of(agent, models, models.v1, models.v2)
            if outcome != "paused":
                break
            agent.kill()
            check_slots(agent.data_dir)
            agent.paused_file.unlink()
        assert outcome in ("failed", "rolled_back"), (
            f"still crash-looping in activating after {agent.starts} starts")
        assert agent.starts >= 3, "gave up before the attempt cap (3 attempts per state)"
        final = ctl.wait_reported(lambda r: r.state in ("failed", "rolled_back")
                                  and same_ref(r.active, models.v1), 10, "v1 serving after the cap",
                                  since=since)
        assert final.last_error and "activating" in final.last_error, final.last_error
        assert serving_version(agent, models.rows[:2]) == 1
        assert check_slots(agent.data_dir).active == models.v1.ref

        # one more crash and restart with the hook still set: the device stays at rest on v1
        agent.kill()
        since = time.monotonic()
        agent.start(pause_in="activating")
        report = ctl.wait_reported(lambda r: True, 10, "a report after the last restart",
                                   since=since)
        # a retry of the failed update would reach activating, where the hook shows it
        holds_for(lambda: agent.paused_in() is None, 1.0, "the device tried the update again")
        assert report.state in ("failed", "rolled_back") and same_ref(report.active, models.v1)
        assert ctl.last_reported is not None and ctl.last_reported.state in ("failed",
                                                                             "rolled_back")
        assert serving_version(agent, models.rows[:2]) == 1
