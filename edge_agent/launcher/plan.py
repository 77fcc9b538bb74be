"""The launcher's decisions, pure: what a journal found at start means, and how a probation
window ends. No file, process or clock here: time comes in as an argument.

The journal's phases, in the order a self-update goes through them::

    committed --stage--> staged --switch--> probation --healthy at the end--> committed (trial)
                                                     \\--exit or unhealthy--> rolling_back
                                                                                 --> committed (good)

Each transition is written to the journal before the ``current`` symlink is changed, so a
SIGKILL at any instant leaves a journal from which :func:`recover` finds a runnable slot.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

SLOTS = ("a", "b")
# a trial agent started this often (launcher restarts in probation) without being committed
# is rolled back: a new agent that kills the machine or the launcher must not loop for ever
MAX_TRIAL_STARTS = 2


class Phase(enum.StrEnum):
    COMMITTED = "committed"
    STAGED = "staged"
    PROBATION = "probation"
    ROLLING_BACK = "rolling_back"


@dataclass(frozen=True)
class Journal:
    phase: Phase
    good: str  # the slot of the last committed agent
    trial: str | None = None  # the slot being staged or on probation
    trial_version: str | None = None
    trial_sha256: str | None = None
    starts: int = 0  # times the trial was started in this probation
    probation_started_at: float | None = None
    last_error: str | None = None

    @classmethod
    def first(cls) -> Journal:
        return cls(Phase.COMMITTED, "a")

    def to_dict(self) -> dict[str, object]:
        return {**self.__dict__, "phase": self.phase.value}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Journal:
        phase = Phase(str(d["phase"]))
        good = str(d["good"])
        trial = d.get("trial")
        if good not in SLOTS or (trial is not None and trial not in SLOTS) or trial == good:
            raise ValueError(f"slots good={good!r} trial={trial!r} are not two of {SLOTS}")
        if phase is not Phase.COMMITTED and trial is None:
            raise ValueError(f"phase {phase.value} without a trial slot")
        starts = d.get("starts", 0)
        started = d.get("probation_started_at")
        return cls(phase, good, None if trial is None else str(trial),
                   _opt_str(d.get("trial_version")), _opt_str(d.get("trial_sha256")),
                   int(starts) if isinstance(starts, int) else 0,
                   float(started) if isinstance(started, (int, float)) else None,
                   _opt_str(d.get("last_error")))


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def standby(good: str) -> str:
    return SLOTS[1 - SLOTS.index(good)]


@dataclass(frozen=True)
class Start:
    """What to run after a (re)start: ``slot`` on probation or not, the journal to write first."""

    journal: Journal
    slot: str
    probation: bool


def recover(journal: Journal, now: float) -> Start:
    """The slot to run when the launcher starts, whatever instant the last one died at."""
    match journal.phase:
        case Phase.COMMITTED | Phase.STAGED:
            # staged: nothing was switched yet; the loop switches once the good agent runs
            return Start(journal, journal.good, probation=False)
        case Phase.PROBATION:
            assert journal.trial is not None
            if journal.starts >= MAX_TRIAL_STARTS:
                return Start(rolled_back(journal, f"the new agent ({journal.trial_version}) was "
                                                  f"started {journal.starts} times without "
                                                  "passing its probation"),
                             journal.good, probation=False)
            return Start(replace(journal, starts=journal.starts + 1, probation_started_at=now),
                         journal.trial, probation=True)
        case Phase.ROLLING_BACK:
            return Start(rolled_back(journal, journal.last_error), journal.good, probation=False)
    raise AssertionError(journal.phase)


def switched(journal: Journal, now: float) -> Journal:
    """The staged trial goes on probation (written before ``current`` points at it)."""
    assert journal.phase is Phase.STAGED and journal.trial is not None
    return replace(journal, phase=Phase.PROBATION, starts=1, probation_started_at=now,
                   last_error=None)


def committed(journal: Journal) -> Journal:
    assert journal.trial is not None
    return Journal(Phase.COMMITTED, journal.trial)


def rolling_back(journal: Journal, error: str) -> Journal:
    return replace(journal, phase=Phase.ROLLING_BACK, last_error=error)


def rolled_back(journal: Journal, error: str | None) -> Journal:
    return Journal(Phase.COMMITTED, journal.good, last_error=error)


@dataclass(frozen=True)
class Probe:
    """One look at the trial agent during its probation."""

    exited: int | None  # its exit code, None while it runs
    healthy: bool  # its local API answered and it is connected to the broker


def judge(probe: Probe, *, started_at: float, now: float, window_s: float,
          seen_healthy: bool) -> str | None:
    """``"commit"``, ``"roll back: why"`` or None (keep watching).

    The trial is committed at the end of the window if it runs and its last look was healthy;
    it is rolled back as soon as it exits, or at the end of the window if it is not healthy then.
    """
    if probe.exited is not None:
        return f"roll back: the new agent exited with {probe.exited} during its probation"
    if now - started_at < window_s:
        return None
    if probe.healthy:
        return "commit"
    what = "was never healthy" if not seen_healthy else "was no longer healthy"
    return f"roll back: the new agent {what} within its {window_s:g} s probation"
