"""Where a rollback points (edge_agent/update/rollback.py) and the update test hook's value
(edge_agent/update/pause.py, edge_agent/daemon.py): pure, no broker."""

from __future__ import annotations

import logging

import pytest

from edge_agent.daemon import PAUSE_ENV, pause_from_env
from edge_agent.update import UpdateState
from edge_agent.update.pause import UpdatePause
from edge_agent.update.rollback import RollbackTo, rollback_to
from edgewise_wire.message_base import ModelRef

V1 = ModelRef("iris", 1, "1" * 64)
V2 = ModelRef("iris", 2, "2" * 64)
V3 = ModelRef("iris", 3, "3" * 64)


def test_a_rollback_before_the_switch_keeps_both_slots() -> None:
    # the smoke test failed: the pointer still names what served, the older slot stays
    assert rollback_to(V1, active=V1, previous=V3) is RollbackTo.ACTIVE_SLOT


def test_a_rollback_after_the_switch_points_back_at_the_previous_slot() -> None:
    assert rollback_to(V1, active=V2, previous=V1) is RollbackTo.PREVIOUS_SLOT


def test_a_rollback_to_nothing_and_to_a_model_no_slot_holds() -> None:
    assert rollback_to(None, active=V2, previous=V1) is RollbackTo.NOTHING
    assert rollback_to(V3, active=V2, previous=V1) is RollbackTo.GONE
    assert rollback_to(V3, active=None, previous=None) is RollbackTo.GONE
    # a ref is the model, the version and the artifact: another artifact is not the slot
    assert rollback_to(ModelRef("iris", 1, "f" * 64), active=V1, previous=None) is \
        RollbackTo.GONE


def test_the_pause_parks_at_its_step_or_after_its_chunks() -> None:
    at_staged = UpdatePause.parse("staged")
    assert at_staged == UpdatePause(UpdateState.STAGED)
    assert at_staged.parks_at_step(UpdateState.STAGED)
    assert not at_staged.parks_at_step(UpdateState.VERIFYING)
    assert not at_staged.parks_after_chunks(100)
    after_two = UpdatePause.parse("downloading:2")
    assert not after_two.parks_at_step(UpdateState.DOWNLOADING)
    assert not after_two.parks_after_chunks(1) and after_two.parks_after_chunks(2)
    assert str(after_two) == "downloading:2" and str(at_staged) == "staged"


@pytest.mark.parametrize("spec", ["bogus", "staged:3", "downloading:x", "downloading:-1", ""])
def test_a_pause_that_names_no_point_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        UpdatePause.parse(spec)


def test_the_daemon_reads_the_hook_from_its_environment_and_ignores_a_bad_one(
        caplog: pytest.LogCaptureFixture) -> None:
    assert pause_from_env({}) is None
    assert pause_from_env({PAUSE_ENV: ""}) is None
    assert pause_from_env({PAUSE_ENV: "activating"}) == UpdatePause(UpdateState.ACTIVATING)
    with caplog.at_level(logging.ERROR):
        assert pause_from_env({PAUSE_ENV: "nonsense"}) is None
    assert "not a state name" in caplog.text
