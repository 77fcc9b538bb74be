"""How the sequential tests' decisions become alerts: fire on the first alarm, stay while the test
is in alarm, clear when it clears; stateless detectors and a newer version's quiet test clear
after K judged windows; devices and groups are separate scopes."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from controller.monitoring import CLEARED, FIRED, AlertKind, AlertState, StateKey
from controller.monitoring.sequential_alerts import (
    Judgement,
    apply_judgements,
    group_key,
    is_group,
)
from edgewise_monitoring.sequential import Decision

CLEAR_AFTER = 3


def decision(detector: str = "drift", *, alarm: bool = False, state: str = "watching",
             fired: bool = False, cleared: bool = False, judged: bool = True,
             score: float = 1.0) -> Decision:
    return Decision(detector, alarm, state, cleared, judged, score, 16.1,
                    f"{detector} {state}", {"test": detector}, fired)


WATCHING = decision()
FIRES = decision(alarm=True, state="alarm", fired=True, score=17.0)
STAYS = decision(state="alarm", score=12.0)  # in alarm, no new crossing in this update
CLEARS = decision(cleared=True)


def run(per_window: Sequence[Sequence[Decision]], key: str = "dev-1", version: int = 1,
        states: dict[StateKey, AlertState] | None = None
        ) -> tuple[dict[StateKey, AlertState], list[tuple[str, str, str]]]:
    current: dict[StateKey, AlertState] = dict(states or {})
    events = []
    for t, decisions in enumerate(per_window):
        out = apply_judgements(current, [Judgement(key, "iris", version, decisions)], float(t),
                               CLEAR_AFTER)
        current.update(out.changed)
        events += [(e.kind.value, e.device_id, e.event) for e in out.events]
    return current, events


def test_an_alert_fires_on_the_first_alarm_stays_while_in_alarm_and_clears_with_the_test() -> None:
    states, events = run([[WATCHING], [FIRES], [STAYS], [STAYS], [CLEARS], [WATCHING]])
    assert events == [("drift", "dev-1", FIRED), ("drift", "dev-1", CLEARED)]
    assert not states[("drift", "dev-1")].firing


def test_no_alarm_no_alert_and_the_state_records_the_evidence() -> None:
    states, events = run([[WATCHING]] * 5)
    assert events == []
    state = states[("drift", "dev-1")]
    assert not state.firing and state.value == 1.0 and state.threshold == 16.1


def test_the_fired_event_carries_the_tests_explanation() -> None:
    out = apply_judgements({}, [Judgement("dev-1", "iris", 2, [FIRES], {"windows": 1})], 5.0,
                           CLEAR_AFTER)
    (event,) = out.events
    assert event.kind is AlertKind.DRIFT and event.version == 2 and event.value == 17.0
    assert event.context["decision"]["explanation"] == {"test": "drift"}
    assert event.context["scope"] == "device" and event.context["windows"] == 1


def test_detectors_map_to_kinds_and_unknown_detectors_are_ignored() -> None:
    decisions = [decision("error_rate", alarm=True, state="alarm", fired=True),
                 decision("bias", alarm=True, state="alarm", fired=True),
                 decision("mystery", alarm=True, state="alarm", fired=True)]
    _, events = run([decisions])
    assert sorted(k for k, _, _ in events) == ["accuracy", "bias"]


def test_a_stateless_detector_clears_after_k_judged_windows_without_an_alarm() -> None:
    alarm = decision("device_error_rate", alarm=True, state="alarm", fired=True)
    quiet, unjudged = decision("adwin"), decision("adwin", judged=False)
    _, events = run([[alarm], [quiet], [quiet]])
    assert events == [("concept", "dev-1", FIRED)]  # two quiet windows: still firing
    _, events = run([[alarm], [quiet], [unjudged], [quiet], [quiet]])
    assert events == [("concept", "dev-1", FIRED), ("concept", "dev-1", CLEARED)]


def test_an_alarm_during_the_quiet_count_restarts_it() -> None:
    alarm = decision("adwin", alarm=True, state="alarm", fired=True)
    quiet = decision("adwin")
    _, events = run([[alarm], [quiet], [quiet], [alarm], [quiet], [quiet]])
    assert events == [("concept", "dev-1", FIRED)]


def test_a_new_versions_quiet_test_clears_an_alert_raised_for_the_old_one() -> None:
    states, events = run([[FIRES]], version=1)
    states, more = run([[WATCHING]] * CLEAR_AFTER, version=2, states=states)
    assert more == [("drift", "dev-1", CLEARED)]
    assert states[("drift", "dev-1")].version == 2


def test_groups_and_devices_are_separate_alerts() -> None:
    group = group_key("site", "berlin")
    out = apply_judgements({}, [Judgement("dev-1", "iris", 1, [FIRES]),
                                Judgement(group, "iris", 1, [FIRES], {"devices": ["a", "b"]})],
                           1.0, CLEAR_AFTER)
    assert {e.device_id for e in out.events} == {"dev-1", "group:site=berlin"}
    group_event = next(e for e in out.events if is_group(e.device_id))
    assert group_event.context["scope"] == "group" and group_event.context["devices"] == ["a", "b"]
    assert group_key("", None) == "group:fleet" and group_key("site", "") == "group:site=(none)"
    assert not is_group("dev-1")


@given(st.lists(st.sampled_from(["watching", "fires", "stays", "clears"]), max_size=40))
def test_events_alternate_and_the_alert_fires_only_on_an_alarm(script: list[str]) -> None:
    by_name = {"watching": WATCHING, "fires": FIRES, "stays": STAYS, "clears": CLEARS}
    states, events = run([[by_name[s]] for s in script])
    kinds = [e for _, _, e in events]
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))  # fired, cleared, ...
    assert not kinds or kinds[0] == FIRED
    if "fires" not in script and "stays" not in script:
        assert kinds == []
    state = states.get(("drift", "dev-1"))
    assert state is None or state.firing == (kinds[-1:] == [FIRED])
