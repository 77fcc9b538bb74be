"""Bad updates through the real daemon, in enforce mode: each is refused or undone, reported in
words, and v1 keeps serving.

One daemon (v1 installed, the controller's public key trusted) gets one bad desired state after
another, each only once the previous one came to rest: refused before any work (signature,
expiry, device class, version), failed after the download (whole-file hash or size), or rolled
back after activation (smoke test, errors or latency in probation). The in-process agent's
bad-input tests (tests/bad_input/) cover unsigned development mode; these go through the
process, its config file and signatures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from edgewise_wire import (
    ArtifactRef,
    Desired,
    ProbationPolicy,
    Reported,
    SmokeTest,
    encode,
)
from simulator.broker import BrokerProcess
from tests.e2e.update.conftest import CHUNK, Models
from tests.harness.agents import (
    AgentProcess,
    Artifact,
    Controller,
    Signer,
    check_slots,
    copy_data_dir,
    describe_reports,
    device,
    same_ref,
    serving_version,
    tamper_signature,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


@dataclass(frozen=True)
class BadUpdate:
    name: str
    # where the update stops: "gate" (refused on arrival, nothing downloaded), "download"
    # (the whole file fails verification), "activation" (smoke test) or "probation"
    stage: str
    error: str  # a regex the reported last_error must match (operator words)
    # (agent, controller, signer, models) -> the desired state's payload; may call ctl.serve
    make: Callable[[AgentProcess, Controller, Signer, Models], bytes]

    @property
    def state(self) -> str:
        """The rest state the agent must report: nothing served yet, or undone after serving."""
        return "failed" if self.stage in ("gate", "download") else "rolled_back"


def _with_artifact(base: Artifact, data: bytes, ref: ArtifactRef) -> Artifact:
    return Artifact(dataclasses.replace(base.manifest, artifact=ref), data)


def _unsigned(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    ctl.serve(m.v2)
    return encode(Desired("dep-unsigned", m.v2.manifest))  # no envelope


def _bad_signature(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    ctl.serve(m.v2)
    envelope = tamper_signature(s.envelope(m.v2.manifest))
    return encode(Desired("dep-bad-signature", m.v2.manifest, envelope=envelope))


def _expired(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    ctl.serve(m.v2)
    envelope = s.envelope(m.v2.manifest, expires_in=-60)
    return encode(Desired("dep-expired", m.v2.manifest, envelope=envelope))


def _other_class(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    ctl.serve(m.v2)
    envelope = s.envelope(m.v2.manifest, device_class="jetson-nano")  # the agent is a pi4
    return encode(Desired("dep-other-class", m.v2.manifest, envelope=envelope))


def _lower_version(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    older = m.v3.with_version(0)  # v1 runs; no rollback order comes with it
    ctl.serve(older)
    return encode(s.desired(older, "dep-lower"))


def _unload_without_order(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    return encode(s.desired(None, "dep-unload"))


def _wrong_hash(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    # every chunk matches its listed hash; the whole file does not match the signed sha256
    good = m.v2.manifest.artifact
    ref = dataclasses.replace(good, sha256=hashlib.sha256(b"another model").hexdigest())
    lying = _with_artifact(m.v2, m.v2.data, ref)
    ctl.serve(lying)
    return encode(s.desired(lying, "dep-wrong-hash"))


def _truncated(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    # the signed sha256 is the whole model's; size and chunk hashes describe 300 bytes less,
    # which is all the controller serves (a publisher that cut the file short)
    short = m.v3.data[:-300]
    ref = dataclasses.replace(ArtifactRef.describe(short, CHUNK), sha256=m.v3.sha256)
    truncated = _with_artifact(m.v3, short, ref)
    ctl.serve(truncated)
    return encode(s.desired(truncated, "dep-truncated"))


def _smoke_fails(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    smoke = m.v2.manifest.smoke_tests[0]
    wrong = SmokeTest(smoke.inputs, [(int(label) + 1) % 3 for label in smoke.expected_labels])
    lying = Artifact(dataclasses.replace(m.v2.manifest, smoke_tests=(wrong,)), m.v2.data)
    ctl.serve(lying)
    return encode(s.desired(lying, "dep-smoke"))


def _errors_in_probation(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    ctl.serve(m.fragile)  # passes its smoke batch of 8, fails every single-row call
    return encode(s.desired(m.fragile, "dep-fragile",
                            probation=ProbationPolicy(duration_s=30.0, max_error_rate=0.05)))


def _too_slow(agent: AgentProcess, ctl: Controller, s: Signer, m: Models) -> bytes:
    ctl.serve(m.v2)
    return encode(s.desired(m.v2, "dep-slow", probation=ProbationPolicy(
        duration_s=1.5, max_p95_latency_ms=0.0001, min_predictions=3)))


BAD_UPDATES = [
    BadUpdate("unsigned manifest", "gate", r"not signed", _unsigned),
    BadUpdate("altered signature", "gate", r"signature.*does not match", _bad_signature),
    BadUpdate("expired manifest", "gate", r"expired", _expired),
    BadUpdate("another device class", "gate", r"device class", _other_class),
    BadUpdate("lower version", "gate", r"not newer.*rollback order", _lower_version),
    BadUpdate("unload without order", "gate", r"unload.*rollback order", _unload_without_order),
    BadUpdate("wrong hash", "download", r"not the one signed for.*hash", _wrong_hash),
    BadUpdate("truncated artifact", "download", r"hash or size", _truncated),
    BadUpdate("smoke test fails", "activation", r"smoke test", _smoke_fails),
    BadUpdate("errors in probation", "probation", r"errors in probation", _errors_in_probation),
    BadUpdate("too slow in probation", "probation", r"too slow.*p95 latency", _too_slow),
]


class Caller(threading.Thread):
    """Single-row predictions in a loop while a probation window runs."""

    def __init__(self, agent: AgentProcess, row: list[float]) -> None:
        super().__init__(daemon=True)
        self.url, self.row = f"http://127.0.0.1:{agent.http_port}", row
        self.stop_event = threading.Event()
        self.statuses: list[int] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.stop_event.is_set():
                try:
                    self.statuses.append(
                        client.post("/v1/predict", json={"features": self.row}).status_code)
                except httpx.HTTPError:
                    self.statuses.append(0)
                time.sleep(0.01)


def test_bad_updates_are_refused_or_undone_and_v1_keeps_serving(
        broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        tmp_path: Path) -> None:
    with device(tmp_path, broker.address, signer) as (agent, ctl):
        copy_data_dir(v1_data_dir, agent)
        agent.start()
        ctl.wait_reported(lambda r: same_ref(r.active, models.v1), 10, "v1 serving")
        previous_error: str | None = None
        outcomes: dict[str, str] = {}
        for bad in BAD_UPDATES:
            since = time.monotonic()
            payload = bad.make(agent, ctl, signer, models)
            # a probation window needs calls to judge
            caller = Caller(agent, models.rows[0]) if bad.stage == "probation" else None
            ctl.publish_raw_desired(payload)
            if caller is not None:
                caller.start()

            def outcome(r: Reported, bad: BadUpdate = bad, prev: str | None = previous_error
                        ) -> bool:
                # a new error (not the previous case's, still retained) in the expected words
                return r.state == bad.state and r.last_error is not None \
                    and r.last_error != prev \
                    and re.search(bad.error, r.last_error, re.IGNORECASE) is not None

            try:
                report = ctl.wait_reported(
                    outcome, 30,
                    f"{bad.name}: state {bad.state!r} with an error matching {bad.error!r}",
                    since=since)
            finally:
                if caller is not None:
                    caller.stop_event.set()
                    caller.join(10)
            assert report.last_error is not None
            outcomes[bad.name] = report.last_error
            previous_error = report.last_error
            assert same_ref(report.active, models.v1), (bad.name, describe_reports(
                ctl.reports(since)))
            assert serving_version(agent, models.rows[:3]) == 1, bad.name
            assert check_slots(agent.data_dir).active == models.v1.ref, bad.name
            if caller is not None:
                assert caller.statuses, f"{bad.name}: no prediction was made in probation"
        health = agent.health()
        assert health["state"] == "rolled_back" and health["serving"] is True, health
        refused_at_the_gate = sum(1 for bad in BAD_UPDATES if bad.stage == "gate")
        assert health["rejected_desired"] == refused_at_the_gate, health  # counted
        assert agent.alive
        # every refusal said why, each in its own words
        assert len(set(outcomes.values())) == len(BAD_UPDATES), outcomes


def test_corrupted_chunk_is_refused_and_asked_again(
        broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        tmp_path: Path) -> None:
    """A chunk whose bytes do not match the signed chunk hash is dropped and requested again;
    the update then completes from good chunks, and nothing unverified is ever activated."""
    with device(tmp_path, broker.address, signer) as (agent, ctl):
        copy_data_dir(v1_data_dir, agent)
        bad_index = 2

        def flip_once(index: int, good: bytes, served: int) -> bytes:
            if index == bad_index and served == 0:
                return bytes([good[0] ^ 0xFF]) + good[1:]
            return good

        ctl.tamper = flip_once
        ctl.serve(models.v3)
        since = time.monotonic()
        ctl.publish_desired(signer.desired(models.v3, "dep-v3"))
        agent.start()
        report = ctl.wait_reported(lambda r: (r.state == "active" and same_ref(r.active, models.v3))
                                   or r.state in ("failed", "rolled_back"), 30,
                                   "v3 committed (or the update given up)", since=since)
        assert report.state == "active" and same_ref(report.active, models.v3), (
            describe_reports(ctl.reports(since)))
        served = ctl.served(models.v3.sha256)
        assert served[bad_index] == 2, f"the tampered chunk was not asked for again: {served}"
        assert all(n == 1 for i, n in served.items() if i != bad_index), served
        assert serving_version(agent, models.rows[:3]) == 3
        assert check_slots(agent.data_dir).active == models.v3.ref
