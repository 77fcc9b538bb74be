"""A fake fleet and clock for driving the pure rollout engine through whole rollouts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from controller.rollouts.decisions import (
    Abort,
    Advance,
    Decision,
)
from controller.rollouts.engine import (
    RolloutState,
    Status,
    apply,
    decide,
    target_of,
)
from controller.rollouts.gates import DeviceObservation, ModelVersion
from controller.rollouts.spec import RolloutSpec

OLD = ModelVersion("cam", 3)
NEW = ModelVersion("cam", 4)
DONE = (Status.COMPLETED, Status.ABORTED, Status.FAILED, Status.PAUSED)


@dataclass(frozen=True)
class Behaviour:
    """How a device does on the new version once it receives it."""

    fails: bool = False
    reports: bool = True  # False: the device goes dark once it is sent anything
    takes_reverts: bool = True  # False: activates, then goes dark before a revert arrives
    accuracy: float = 0.91
    labelled: int = 40
    p95_latency_ms: float = 20.0
    drift_psi: float = 0.05


@dataclass
class FakeFleet:
    """Devices that take a tick to act on what they are sent; all on ``OLD`` to begin with."""

    device_ids: list[str]
    baseline_accuracy: float = 0.92
    behaviour: Behaviour = Behaviour()
    overrides: dict[str, Behaviour] = field(default_factory=dict)
    obs: dict[str, DeviceObservation] = field(default_factory=dict)
    inbox: dict[str, ModelVersion | None] = field(default_factory=dict)
    sent_log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for d in self.device_ids:
            self.add(d)

    def add(self, device_id: str) -> None:
        self.obs[device_id] = DeviceObservation(active=OLD, update_state="active",
                                                baseline_accuracy=self.baseline_accuracy)

    def act(self, decision: Decision, target: ModelVersion = NEW) -> None:
        if isinstance(decision, Advance):
            self.sent_log += decision.devices
            self.inbox.update({d: target for d in decision.devices})
        elif isinstance(decision, Abort):
            self.inbox.update(decision.revert)

    def settle(self) -> None:
        """Every device acts on its inbox and reports."""
        for device, wanted in self.inbox.items():
            o = self.obs[device]
            how = self.overrides.get(device, self.behaviour)
            if not how.reports or (wanted != NEW and not how.takes_reverts):
                self.obs[device] = replace(o, online=False)
            elif wanted != NEW:  # a revert
                self.obs[device] = DeviceObservation(
                    active=wanted, update_state="active", online=o.online,
                    baseline_accuracy=o.baseline_accuracy)
            elif how.fails:
                self.obs[device] = replace(o, update_state="failed")
            else:
                self.obs[device] = replace(
                    o, active=NEW, update_state="active", accuracy=how.accuracy,
                    labelled=how.labelled, p95_latency_ms=how.p95_latency_ms,
                    drift_psi=how.drift_psi)
        self.inbox = {}


@dataclass
class Run:
    spec: RolloutSpec
    state: RolloutState
    fleet: FakeFleet
    now: float = 1_000_000.0
    step: float = 60.0
    decisions: list[tuple[float, Decision]] = field(default_factory=list)

    def tick(self) -> Decision:
        decision = decide(self.spec, self.state, self.fleet.obs, self.now)
        self.decisions.append((self.now, decision))
        self.fleet.act(decision, target_of(self.spec))
        self.state = apply(self.state, decision, self.now)
        self.fleet.settle()
        self.now += self.step
        return decision

    def until(self, stop: Callable[[RolloutState], bool] = lambda s: s.status in DONE,
              max_ticks: int = 2000) -> RolloutState:
        for _ in range(max_ticks):
            self.tick()
            if stop(self.state):
                return self.state
        raise AssertionError(f"no stop after {max_ticks} ticks: {self.state.status}")

    def of(self, kind: type) -> list:
        return [d for _, d in self.decisions if isinstance(d, kind)]
