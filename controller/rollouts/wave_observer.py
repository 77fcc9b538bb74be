"""What the gates of a wave are judged on: each planned device's reported state, and for the
current wave the figures of the new version, the accuracy baseline each device is held to, and
the resource cost of the new version and of the previous one on each device."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

from controller.fleet.device_registry import DeviceRow
from controller.fleet.versions import AgentVersion, ModelVersion
from controller.rollouts.engine import RolloutState, Status
from controller.rollouts.gates import DeviceObservation
from controller.rollouts.observations import (
    BASELINE_WINDOW_S,
    CostLike,
    CostSource,
    FiguresSource,
    observe,
    observe_agents,
)
from controller.rollouts.store import RolloutRecord


class WaveObserver:
    def __init__(self, figures: FiguresSource,
                 reference_accuracy: Callable[[ModelVersion], Awaitable[float | None]],
                 costs: CostSource | None = None) -> None:
        self.figures = figures
        self._reference_accuracy = reference_accuracy
        self.costs = costs

    async def observe(self, record: RolloutRecord, state: RolloutState,
                       rows: Mapping[str, DeviceRow],
                       for_view: bool = False) -> dict[str, DeviceObservation]:
        """Reported state of every planned device; figures only for the current wave, only
        for the gates the spec switches on (and, for a view, of a paused rollout too)."""
        if record.spec.kind == "agent":  # no model figures: its gates read the reported state
            return observe_agents(rows, list(state.assignment),
                                  AgentVersion(record.spec.agent_version))
        gates = record.spec.gates
        figures = baselines = None
        costs: Mapping[str, CostLike] | None = None
        baseline_costs: Mapping[str, CostLike] | None = None
        metric_gates = (gates.max_accuracy_drop, gates.max_p95_latency_ms, gates.max_drift_psi,
                        gates.max_memory_increase, gates.max_cpu_increase)
        judged = {Status.RUNNING, Status.SOAKING} | ({Status.PAUSED} if for_view else set())
        if state.status in judged and state.wave >= 0 \
                and any(g is not None for g in metric_gates):
            wave = state.sent_in(state.wave)
            since = state.wave_started_at if state.wave_started_at is not None \
                else record.created_at
            figures = await asyncio.to_thread(self.figures.version_figures, wave,
                                              record.spec.model, record.spec.version, since)
            if gates.max_accuracy_drop is not None:
                baselines = await self._baselines(record, state, wave)
            if self.costs is not None and (gates.max_memory_increase is not None
                                           or gates.max_cpu_increase is not None):
                costs, baseline_costs = await self._costs(record, state, wave, since)
        return observe(rows, list(state.assignment), record.target, figures, baselines,
                       costs, baseline_costs)

    async def _costs(self, record: RolloutRecord, state: RolloutState, devices: Sequence[str],
                     since: float) -> tuple[Mapping[str, CostLike], Mapping[str, CostLike]]:
        """The new version's cost on each device since the wave started, and the cost of the
        version each device served before it (from its own health windows in the hour before
        the rollout and up to the wave's start: a device installed by hand has no previous
        desired state, but it has health windows)."""
        assert self.costs is not None
        spec = record.spec
        new = await asyncio.to_thread(self.costs.version_costs, devices, spec.model,
                                      spec.version, since)
        old = await asyncio.to_thread(self.costs.baseline_costs, devices, spec.model,
                                      spec.version, record.created_at - BASELINE_WINDOW_S,
                                      since)
        return new, old

    async def _baselines(self, record: RolloutRecord, state: RolloutState,
                         devices: Sequence[str]) -> dict[str, float | None]:
        """The accuracy each device's previous version is held to.

        Pooled over the wave's devices that ran the same previous version, from their labelled
        feedback since an hour before the rollout started (one device's few labels are too
        noisy to judge by). With fewer than ``min_labelled`` labels: that version's accuracy on
        the converter's labelled sample (``parity.artifact_accuracy`` of its manifest); a
        device that ran no model is held to the new version's own conversion accuracy.
        """
        groups: dict[ModelVersion | None, list[str]] = defaultdict(list)
        for d in devices:
            previous = state.previous.get(d)
            groups[previous if isinstance(previous, ModelVersion) else None].append(d)
        out: dict[str, float | None] = {}
        for previous, group in groups.items():
            reference = await self._reference_accuracy(previous or record.target)
            pooled = None
            if previous is not None and previous != record.target:
                figures = await asyncio.to_thread(
                    self.figures.version_figures, group, previous.model, previous.version,
                    record.created_at - BASELINE_WINDOW_S)
                labelled = sum(f.labelled for f in figures.values())
                hits = sum((f.accuracy or 0.0) * f.labelled for f in figures.values())
                if labelled and (labelled >= record.spec.gates.min_labelled or reference is None):
                    pooled = hits / labelled
            baseline = pooled if pooled is not None else reference
            out.update({d: baseline for d in group})
        return out
