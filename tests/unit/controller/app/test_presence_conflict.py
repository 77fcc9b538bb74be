"""Who may run under a topic root, given the controller presence retained there."""

from __future__ import annotations

from controller.app.presence import conflict
from edgewise_wire import ControllerPresence


def _seen(instance: str, online: bool) -> ControllerPresence:
    return ControllerPresence(instance, online=online, replica="web-1-4242-a1b2c3",
                              started_at=1765130400.0, ts=1765130500.0)


def test_a_free_root_may_be_run() -> None:
    assert conflict(None, "ctl-a", "ew/v1") is None
    assert conflict(_seen("ctl-b", online=False), "ctl-a", "ew/v1") is None


def test_the_same_instance_may_run_again_or_beside_itself() -> None:
    assert conflict(_seen("ctl-a", online=True), "ctl-a", "ew/v1") is None


def test_another_live_instance_is_named_with_what_to_do() -> None:
    reason = conflict(_seen("ctl-b", online=True), "ctl-a", "acme/ew/v1")
    assert reason is not None
    assert "\n" not in reason
    assert "instance ctl-b" in reason and "replica web-1-4242-a1b2c3" in reason
    assert "2025-12-07 18:00:00 UTC" in reason
    assert "'acme/ew/v1'" in reason and "instance ctl-a" in reason
    assert "--topic-root" in reason and "stop the other controller" in reason
