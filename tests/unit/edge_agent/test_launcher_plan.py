"""The launcher's pure decisions: every journal a SIGKILL can leave has a runnable slot, and a
probation ends in a commit only for a trial that runs and is healthy at the end."""

from __future__ import annotations

import pytest

from edge_agent.launcher.plan import (
    MAX_TRIAL_STARTS,
    Journal,
    Phase,
    Probe,
    committed,
    judge,
    recover,
    rolled_back,
    rolling_back,
    switched,
)

STAGED = Journal(Phase.STAGED, "a", trial="b", trial_version="2", trial_sha256="0" * 64)


def test_committed_and_staged_run_the_good_slot() -> None:
    for journal in (Journal.first(), STAGED):
        start = recover(journal, now=10.0)
        assert (start.slot, start.probation, start.journal) == ("a", False, journal)


def test_a_probation_interrupted_gives_the_trial_one_more_start_then_rolls_back() -> None:
    probation = switched(STAGED, now=5.0)
    assert probation.phase is Phase.PROBATION and probation.starts == 1
    again = recover(probation, now=20.0)
    assert again.slot == "b" and again.probation and again.journal.starts == 2
    assert again.journal.probation_started_at == 20.0
    assert MAX_TRIAL_STARTS == 2
    final = recover(again.journal, now=30.0)
    assert final.slot == "a" and not final.probation
    assert final.journal.phase is Phase.COMMITTED and final.journal.good == "a"
    assert "started 2 times" in (final.journal.last_error or "")


def test_rolling_back_finishes_on_the_good_slot() -> None:
    journal = rolling_back(switched(STAGED, now=1.0), "it exited")
    start = recover(journal, now=2.0)
    assert start.slot == "a" and start.journal == rolled_back(journal, "it exited")
    assert start.journal.last_error == "it exited" and start.journal.trial is None


def test_commit_makes_the_trial_the_good_slot() -> None:
    assert committed(switched(STAGED, now=1.0)) == Journal(Phase.COMMITTED, "b")


@pytest.mark.parametrize(("exited", "healthy", "now", "seen", "verdict"), [
    (None, False, 5.0, False, None),  # inside the window: keep watching
    (None, True, 5.0, True, None),
    (None, True, 10.0, True, "commit"),
    (None, False, 10.0, False, "roll back: the new agent was never healthy"),
    (None, False, 10.0, True, "roll back: the new agent was no longer healthy"),
    (3, True, 1.0, True, "roll back: the new agent exited with 3"),
], ids=["early-unhealthy", "early-healthy", "end-healthy", "never-healthy", "no-longer-healthy",
        "exited"])
def test_judge(exited: int | None, healthy: bool, now: float, seen: bool,
               verdict: str | None) -> None:
    got = judge(Probe(exited, healthy), started_at=0.0, now=now, window_s=10.0, seen_healthy=seen)
    assert (got is None) if verdict is None else (got or "").startswith(verdict)


@pytest.mark.parametrize("bad", [
    {"phase": "committed", "good": "c"},
    {"phase": "probation", "good": "a"},
    {"phase": "staged", "good": "a", "trial": "a"},
    {"phase": "nonsense", "good": "a"},
], ids=["bad-slot", "no-trial", "same-slot", "bad-phase"])
def test_a_journal_that_makes_no_sense_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Journal.from_dict(bad)


def test_the_journal_round_trips() -> None:
    journal = switched(STAGED, now=3.5)
    assert Journal.from_dict(journal.to_dict()) == journal
