"""What an operator asks for when rolling a model or agent version out: the spec's types.

A :class:`RolloutSpec` is plain data, read from a TOML/JSON file or a REST body by
:func:`controller.rollouts.spec_parse.spec_from_dict`, checked by
:mod:`controller.rollouts.spec_checks` (against the number of devices the selector matches
*now*, because "is the last wave 100%?" and "are the waves increasing?" only have an answer for
a fleet size), and split into waves of devices by :func:`controller.rollouts.wave_plan.plan_waves`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from controller.errors import ValidationError
from edgewise_wire import ProbationPolicy

GateFailurePolicy = Literal["pause", "abort"]
RolloutKind = Literal["model", "agent"]
MAX_INT32 = 2**31 - 1  # versions and priorities are stored as 32-bit integers


class SpecError(ValidationError):
    """The rollout spec is malformed or cannot work for the matched fleet.

    ``problems`` lists every issue found, so an operator fixes a file in one round.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class WaveSize:
    """A cumulative wave target: ``value`` devices, or ``value`` percent of the fleet."""

    value: int | float
    is_percent: bool = False

    @classmethod
    def devices(cls, count: int) -> WaveSize:
        return cls(count, False)

    @classmethod
    def percent(cls, pct: float) -> WaveSize:
        return cls(pct, True)

    def target(self, total: int) -> int:
        """Devices covered once this wave is done (percent rounds up, so 1% of 5 is 1)."""
        if self.is_percent:
            return min(total, math.ceil(Fraction(str(self.value)) * total / 100))
        return min(total, int(self.value))

    def covers_all(self, total: int) -> bool:
        return self.value >= 100 if self.is_percent else self.value >= total

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.is_percent else str(self.value)


DEFAULT_WAVES: tuple[WaveSize, ...] = (
    WaveSize.devices(1), WaveSize.percent(10), WaveSize.percent(50), WaveSize.percent(100))


@dataclass(frozen=True)
class FailureBudget:
    """How many failed activations a wave tolerates: a ``count``, or a ``share`` of the wave."""

    count: int | None = 0
    share: float | None = None

    def __str__(self) -> str:
        return f"{self.share:g} of the wave" if self.share is not None else f"{self.count} devices"


@dataclass(frozen=True)
class Gates:
    """Thresholds a wave must meet before the next one starts. ``None`` switches a gate off."""

    min_reporting_share: float = 0.9
    max_failed_activations: FailureBudget = field(default_factory=FailureBudget)
    max_accuracy_drop: float | None = None
    max_p95_latency_ms: float | None = None
    max_drift_psi: float | None = None
    min_labelled: int = 30
    # resource gates: how much more the new version may cost than the previous one on the same
    # devices (0.25: 25% more); session memory at activation, CPU time per prediction
    max_memory_increase: float | None = None
    max_cpu_increase: float | None = None


@dataclass(frozen=True)
class RolloutSpec:
    """One model version going to the devices a selector picks, wave by wave.

    ``soak_seconds`` is one value for every wave, or one per wave (a longer canary soak); the
    soak starts once the wave reports the version. ``wave_timeout_seconds`` bounds two waits:
    for the wave to report (from the wave's start) and for gates still short of evidence (from
    the soak's start, if longer than the soak). Either running out is a gate failure.

    ``probation``: the health window each device keeps the new version under before
    it commits it (sent with the desired state; None: the agent's own default). The wave
    counts a device as done only once it committed.

    ``kind`` ``"agent"``: the rollout moves devices to agent ``agent_version`` (a registered
    agent bundle) instead of a model version; ``model`` and ``version`` stay empty. Its device
    is done once it reports that agent version after the launcher's probation; a device whose
    launcher restored the old agent counts as a failed activation. Metric gates and
    ``probation`` are model-only (the launcher keeps its own probation).
    """

    model: str
    version: int
    selector: str = ""
    waves: tuple[WaveSize, ...] = DEFAULT_WAVES
    soak_seconds: float | tuple[float, ...] = 600.0
    gates: Gates = field(default_factory=Gates)
    on_gate_failure: GateFailurePolicy = "pause"
    priority: int = 0
    wave_timeout_seconds: float = 3600.0
    name: str = ""
    probation: ProbationPolicy | None = None
    kind: RolloutKind = "model"
    agent_version: str = ""

    @property
    def display_name(self) -> str:
        """The name, or ``model:version`` (``agent VERSION``) when none was given; used in
        errors and logs."""
        if self.name:
            return self.name
        return f"agent {self.agent_version}" if self.kind == "agent" \
            else f"{self.model}:{self.version}"

    def soak_for(self, wave: int) -> float:
        if isinstance(self.soak_seconds, tuple):
            return self.soak_seconds[min(wave, len(self.soak_seconds) - 1)]
        return self.soak_seconds

