"""Window-rule hysteresis (latency, silence): fire after K consecutive bad windows, clear after
K good ones, never flap."""

from __future__ import annotations

import pytest

from controller.monitoring import (
    CLEARED,
    FIRED,
    AlertKind,
    AlertRules,
    AlertState,
    DeviceSeen,
    Verdict,
    WindowObservation,
    evaluate,
    step,
)

RULES = AlertRules(fire_after=3, clear_after=2)
BAD = Verdict(AlertKind.LATENCY, True, 900.0, 250.0, "p95 latency 900 ms")
GOOD = Verdict(AlertKind.LATENCY, False, 10.0, 250.0, "p95 latency 10 ms")
UNKNOWN = Verdict(AlertKind.LATENCY, None, None, None, "too few predictions")


def run(verdicts: list[Verdict], state: AlertState | None = None,
        rules: AlertRules = RULES) -> tuple[AlertState, list[str]]:
    state = state or AlertState(AlertKind.LATENCY, "d1")
    events = []
    for t, verdict in enumerate(verdicts):
        state, event = step(state, verdict, float(t), rules, "m", 1)
        if event is not None:
            events.append(event.event)
    return state, events


def test_fires_on_the_kth_consecutive_bad_window_and_not_before() -> None:
    state, events = run([BAD, BAD])
    assert events == [] and not state.firing and state.bad_streak == 2
    state, events = run([BAD, BAD, BAD])
    assert events == [FIRED] and state.firing and state.since == 2.0


def test_a_good_window_in_between_restarts_the_count() -> None:
    state, events = run([BAD, BAD, GOOD, BAD, BAD])
    assert events == [] and not state.firing


def test_alternating_windows_never_fire() -> None:
    _, events = run([BAD, GOOD] * 20)
    assert events == []


def test_unknown_windows_neither_count_nor_reset() -> None:
    state, events = run([BAD, UNKNOWN, BAD, UNKNOWN, UNKNOWN, BAD])
    assert events == [FIRED]
    state, events = run([UNKNOWN] * 10)
    assert events == [] and state == AlertState(AlertKind.LATENCY, "d1")


def test_clears_after_k_good_windows_and_a_bad_one_restarts_the_clearing() -> None:
    firing, _ = run([BAD] * 3)
    state, events = run([GOOD, BAD, GOOD], firing)
    assert events == [] and state.firing
    state, events = run([GOOD, GOOD], firing)
    assert events == [CLEARED] and not state.firing


def test_a_firing_alert_does_not_fire_again_while_bad() -> None:
    _, events = run([BAD] * 10)
    assert events == [FIRED]


def test_fire_clear_fire_gives_three_events() -> None:
    _, events = run([BAD] * 3 + [GOOD] * 2 + [BAD] * 3)
    assert events == [FIRED, CLEARED, FIRED]


def test_streaks_are_capped_so_a_steady_state_stops_changing() -> None:
    state, _ = run([GOOD] * 50)
    assert state.good_streak == RULES.clear_after
    again, _ = step(state, GOOD, 99.0, RULES, "m", 1)
    assert again.same_as(state)


def test_a_new_model_version_restarts_the_evidence_unless_firing() -> None:
    state = AlertState(AlertKind.LATENCY, "d1")
    for t in range(2):
        state, _ = step(state, BAD, float(t), RULES, "m", 1)
    state, event = step(state, BAD, 3.0, RULES, "m", 2)
    assert event is None and state.bad_streak == 1 and state.version == 2
    firing, _ = run([BAD] * 3)
    still, event = step(firing, BAD, 9.0, RULES, "m", 2)
    assert event is None and still.firing


def test_event_context_names_the_device_version_and_window() -> None:
    verdict = Verdict(AlertKind.LATENCY, True, 900.0, 250.0, "p95 latency 900 ms",
                      {"window_start": 1.0, "window_end": 2.0})
    state = AlertState(AlertKind.LATENCY, "dev-7")
    event = None
    for t in range(3):
        state, event = step(state, verdict, float(t), RULES, "iris", 4)
    assert event is not None
    assert event.context["device_id"] == "dev-7"
    assert (event.context["model"], event.context["version"]) == ("iris", 4)
    assert event.context["window_end"] == 2.0 and event.context["consecutive"] == 3
    assert event.to_dict()["kind"] == "latency"


def window(device: str, end: float, slow: bool) -> WindowObservation:
    return WindowObservation(device, "iris", 1, end - 1, end, 200,
                             p95_latency_ms=900.0 if slow else 1.0)


def test_evaluate_judges_windows_in_order_per_device_and_reports_changes_only() -> None:
    windows = [window("a", t, True) for t in (3.0, 1.0, 2.0)] + [window("b", 1.0, False)]
    out = evaluate({}, windows, [], now=10.0, rules=RULES)
    assert [(e.kind, e.device_id, e.event) for e in out.events] == [(AlertKind.LATENCY, "a", FIRED)]
    assert out.changed[("latency", "a")].firing
    again = evaluate(out.changed, [], [], now=11.0, rules=RULES)
    assert again.events == [] and again.changed == {}


def test_silence_fires_at_once_for_a_device_that_should_talk_and_clears_when_heard() -> None:
    rules = AlertRules(silent_after_s=60)
    quiet = DeviceSeen("d", last_seen=0.0, online=True, active_model="iris", active_version=1)
    idle = DeviceSeen("e", last_seen=0.0, online=True)  # no model: nothing expected from it
    out = evaluate({}, [], [quiet, idle], now=100.0, rules=rules)
    assert [(e.device_id, e.event) for e in out.events] == [("d", FIRED)]
    back = DeviceSeen("d", last_seen=99.0, online=True, active_model="iris", active_version=1)
    out2 = evaluate(out.changed, [], [back], now=100.0, rules=rules)
    assert [(e.device_id, e.event) for e in out2.events] == [("d", CLEARED)]
    gone = DeviceSeen("e", last_seen=0.0, online=False)  # its last will said offline
    out3 = evaluate({}, [], [gone], now=100.0, rules=rules)
    assert [(e.device_id, e.event) for e in out3.events] == [("e", FIRED)]


@pytest.mark.parametrize("bad_kwargs", [{"fire_after": 0}, {"clear_after": 0},
                                        {"latency_p95_ms": 0}, {"silent_after_s": 0}])
def test_impossible_rules_are_refused(bad_kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AlertRules(**bad_kwargs)  # type: ignore[arg-type]
