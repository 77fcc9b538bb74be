"""What an export asks for: the model, version, time range, devices and labels, and the share
of each group's predictions it keeps (:class:`Sampling`); and what it says when nothing matched."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.errors import ValidationError


@dataclass(frozen=True)
class ExportQuery:
    model: str
    version: int | None = None  # None: every version
    since: float | None = None  # Unix seconds; None: from the first record
    selector: str | None = None
    labelled_only: bool = False
    sampling: Sampling | None = None  # None: every prediction


@dataclass(frozen=True)
class Sampling:
    """Which share of the predictions an export keeps, per group of devices.

    A group is the value of the device label ``by`` (every device is one group without it);
    ``shares`` gives a group its own share, the others keep ``share``. Whether a prediction is
    kept depends only on ``seed`` and its key (device, epoch, seq, row in the record), so the
    same query gives the same rows, and each group keeps its share whatever the others do.
    The export gains a ``sample_share`` column: a row stands for 1/share predictions."""

    share: float
    by: str | None = None
    shares: tuple[tuple[str, float], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for value in (self.share, *(v for _, v in self.shares)):
            if not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
                raise ValidationError(f"a sampling share must be within (0, 1], not {value!r}")

    def share_of(self, labels: dict[str, str]) -> float:
        if self.by is None:
            return self.share
        return dict(self.shares).get(labels.get(self.by, ""), self.share)

    def keep(self, device_id: str, epoch: int, seq: int, n: int, share: float) -> Any:
        """A boolean mask over the record's n predictions."""
        if share >= 1.0:
            return np.ones(n, dtype=bool)
        key = [self.seed & _U64, zlib.crc32(device_id.encode()), epoch & _U64, seq & _U64]
        return np.random.default_rng(key).random(n) < share


_U64 = (1 << 64) - 1


def parse_sampling(share: float | None, by: str | None, group_shares: Sequence[str],
                   seed: int = 0) -> Sampling | None:
    """The sampling asked for by ``--sample SHARE [--sample-by LABEL] [--sample-share
    GROUP=SHARE ...] [--seed N]`` (and the REST parameters of the same names); None when
    nothing is sampled."""
    if share is None and not group_shares:
        return None
    shares: list[tuple[str, float]] = []
    for item in group_shares:
        group, sep, value = item.rpartition("=")
        try:
            shares.append((group, float(value)))
        except ValueError:
            sep = ""
        if not sep or not group:
            raise ValidationError(f"sample share {item!r}: write GROUP=SHARE, e.g. canary=0.5")
    if shares and not by:
        raise ValidationError("a share per group needs the label that names the groups "
                              "(sample_by, e.g. --sample-by group)")
    return Sampling(1.0 if share is None else share, by or None, tuple(shares), seed)


class EmptyExport(ValidationError):
    """Nothing matched: no prediction of the model in the range, devices and labels asked."""


def describe(q: ExportQuery) -> str:
    what = f"{q.model}:{q.version}" if q.version is not None else q.model
    parts = [f"no predictions of {what}"]
    if q.since is not None:
        parts.append(f"since ts {q.since:.0f}")
    if q.selector:
        parts.append(f"on devices matching {q.selector!r}")
    if q.labelled_only:
        parts.append("with a label")
    if q.sampling is not None:
        parts.append("in the sample")
    return " ".join(parts)

