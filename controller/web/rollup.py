"""Pure arithmetic behind the fleet views: time buckets, per-device sums rolled up by group.

No database, no clock: the queries hand in rows and ``now``; tests drive these directly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# the bucket plan lives in the bottom layer, shared with monitoring's drift views; the fleet
# views keep importing it from here
from controller.timebuckets import NICE_STEPS as NICE_STEPS
from controller.timebuckets import BucketPlan as BucketPlan
from controller.timebuckets import plan_buckets as plan_buckets
from edgewise_wire.update_states import gave_up_on

NO_GROUP = ""  # devices without the grouping label


@dataclass
class Sums:
    """Additive telemetry figures; ``+`` adds two of them (devices into groups, buckets)."""

    predictions: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0
    latency_max: float | None = None
    labelled: int = 0
    hits: int = 0
    errors: int = 0

    def add(self, other: Sums) -> None:
        self.predictions += other.predictions
        self.latency_sum += other.latency_sum
        self.latency_n += other.latency_n
        if other.latency_max is not None:
            self.latency_max = other.latency_max if self.latency_max is None \
                else max(self.latency_max, other.latency_max)
        self.labelled += other.labelled
        self.hits += other.hits
        self.errors += other.errors

    @property
    def accuracy(self) -> float | None:
        return self.hits / self.labelled if self.labelled else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_sum / self.latency_n if self.latency_n else None

    def figures(self) -> dict[str, Any]:
        return {"predictions": self.predictions, "errors": self.errors,
                "labelled": self.labelled, "accuracy": self.accuracy,
                "mean_latency_ms": self.mean_latency_ms, "max_latency_ms": self.latency_max}


def sums_from_row(m: Any) -> Sums:
    """A :class:`Sums` from an aggregate row with the columns the queries select."""
    return Sums(predictions=int(m["predictions"] or 0),
                latency_sum=float(m["latency_sum"] or 0.0), latency_n=int(m["latency_n"] or 0),
                latency_max=float(m["latency_max"]) if m["latency_max"] is not None else None,
                labelled=int(m["labelled"] or 0), hits=int(m["hits"] or 0),
                errors=int(m["errors"] or 0))


def fill_series(plan: BucketPlan, rows: Mapping[int, Sums],
                drift: Mapping[int, float] | None = None,
                p95: Mapping[int, float] | None = None) -> list[dict[str, Any]]:
    """One point per bucket, oldest first; empty buckets have zero counts and no ratios."""
    points = []
    for i in range(plan.count):
        sums = rows.get(i, Sums())
        point = {"ts": plan.start + i * plan.size, **sums.figures()}
        point["drift_psi"] = drift.get(i) if drift is not None else None
        point["p95_latency_ms"] = p95.get(i) if p95 is not None else None
        points.append(point)
    return points


@dataclass(frozen=True)
class DeviceFacts:
    """What the rollup needs to know about one device besides its telemetry."""

    device_id: str
    labels: Mapping[str, str]
    online: bool
    state: str | None
    model: str | None
    version: int | None
    # what the controller last ordered it to run (a rollback onto it is no failure)
    desired_model: str | None = None
    desired_version: int | None = None

    @property
    def update_failed(self) -> bool:
        """Its last update failed: ``failed``, or rolled back away from what it should run."""
        desired = (None if self.desired_model is None
                   else (self.desired_model, self.desired_version))
        return gave_up_on(self.state, None if self.model is None else (self.model, self.version),
                          desired)


@dataclass
class _Group:
    devices: int = 0
    online: int = 0
    failed: int = 0
    versions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    sums: Sums = field(default_factory=Sums)
    drifting: int = 0


def rollup_groups(devices: Iterable[DeviceFacts], label: str, sums: Mapping[str, Sums],
                  drift: Mapping[str, float] | None = None,
                  drifting: Collection[str] = ()) -> list[dict[str, Any]]:
    """Health per value of ``label``: device counts, versions, summed figures, drift.

    Devices lacking the label form the group ``""``. ``drift`` maps group values to the
    group's PSI (None: no drift figures at all); ``drifting`` names the devices whose latest
    window was judged drifted.
    """
    groups: dict[str, _Group] = defaultdict(_Group)
    for d in devices:
        g = groups[d.labels.get(label, NO_GROUP)]
        g.devices += 1
        g.online += int(d.online)
        g.failed += int(d.update_failed)
        if d.model is not None:
            g.versions[f"{d.model}:{d.version}"] += 1
        if d.device_id in sums:
            g.sums.add(sums[d.device_id])
        g.drifting += int(d.device_id in drifting)
    out = []
    for value in sorted(groups):
        g = groups[value]
        out.append({"group": value, "devices": g.devices, "online": g.online,
                    "offline": g.devices - g.online, "failed": g.failed,
                    "versions": dict(sorted(g.versions.items())), **g.sums.figures(),
                    "drift_psi": drift.get(value) if drift is not None else None,
                    "drifting": g.drifting if drift is not None else None})
    return out


def label_keys(labels: Iterable[Mapping[str, str]]) -> list[str]:
    """Every label key any device carries, sorted: the choices for "group by"."""
    keys: set[str] = set()
    for m in labels:
        keys.update(m)
    return sorted(keys)
