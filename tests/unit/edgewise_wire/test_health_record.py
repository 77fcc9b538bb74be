"""Reading ``health`` records: absurd values are left out with a reason, never a crash."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewise_wire import LogsReply, LogsRequest, SchemaError, TelemetryBatch, decode, encode
from edgewise_wire.health import parse_health


def record(**overrides: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"kind": "health", "ts": 160.0, "start_ts": 100.0, "samples": 12,
                         "gauges": {"rss_bytes": [1e6, 2e6, 3e6], "temp_c": [50, 55, 60]},
                         "model": "iris", "version": 2,
                         "cost": {"predictions": 10, "cpu_s": 0.01, "session_bytes": 1000}}
    r.update(overrides)
    return r


def test_a_plausible_record_is_read_whole() -> None:
    parsed = parse_health(record())
    assert parsed.rejected == []
    assert parsed.gauges["temp_c"] == (50.0, 55.0, 60.0)
    assert parsed.cost == {"predictions": 10.0, "cpu_s": 0.01, "session_bytes": 1000.0}


@pytest.mark.parametrize(("gauges", "reason"), [
    ({"temp_c": [50, 500, 1000]}, "temp_c: outside [-60, 150]"),
    ({"rss_bytes": [-5, 1, 2]}, "rss_bytes: outside [0, 1.09951e+12]"),
    ({"rss_bytes": [3, 2, 1]}, "rss_bytes: min <= mean <= max does not hold"),
    ({"rss_bytes": [1, 2]}, "rss_bytes: not [min, mean, max]"),
    ({"rss_bytes": [1, "x", 2]}, "rss_bytes: not [min, mean, max]"),
    ({"rss_bytes": [1, True, 2]}, "rss_bytes: not [min, mean, max]"),
    ({"flux": [1, 2, 3]}, "flux: unknown gauge"),
])
def test_an_absurd_gauge_is_left_out_and_the_rest_kept(gauges: dict[str, Any],
                                                        reason: str) -> None:
    parsed = parse_health(record(gauges={**gauges, "load1": [0.1, 0.2, 0.3]}))
    assert parsed.rejected == [reason]
    assert list(parsed.gauges) == ["load1"]


def test_numbers_past_float_range_are_not_numbers() -> None:
    parsed = parse_health(record(samples=10**400, gauges={"load1": [0, 1, 10**400]}))
    assert parsed.rejected == ["load1: not [min, mean, max]", "samples: not a number"]
    with pytest.raises(SchemaError):
        parse_health(record(ts=10**400))


def test_bad_cost_model_and_scalars_are_named() -> None:
    parsed = parse_health(record(cost={"cpu_s": -1, "predictions": "many"}, version="2",
                                 reconnects=float("inf"), gauges="none"))
    assert sorted(parsed.rejected) == sorted([
        "gauges: not an object", "reconnects: not a number", "cost.predictions: not a number",
        "cost.cpu_s: outside [0, 1e+09]", "model: needs a model name and an integer version"])
    assert parsed.model is None and parsed.cost == {}


@pytest.mark.parametrize("bad", [
    None, [], {"ts": 1.0}, {"ts": "x", "start_ts": 0}, {"ts": 1.0, "start_ts": 2.0},
    {"ts": 1e9, "start_ts": 0.0},
])
def test_a_record_without_a_window_is_refused(bad: Any) -> None:
    with pytest.raises(SchemaError):
        parse_health(bad)


def test_a_batch_may_carry_health_records() -> None:
    batch = TelemetryBatch(1, 1, [{"seq": 1, **record()}])
    assert decode(encode(batch), TelemetryBatch).records[0]["kind"] == "health"


def test_logs_request_and_reply_round_trip() -> None:
    req = decode(encode(LogsRequest("r1", 10.0, 50)), LogsRequest)
    assert req == LogsRequest("r1", 10.0, 50)
    line = {"ts": 11.0, "level": "WARNING", "logger": "edgewise.agent", "message": "hot"}
    assert decode(encode(LogsReply("r1", [line], 2)), LogsReply).lines == [line]
    with pytest.raises(SchemaError):
        decode(encode(LogsReply("r1", [{"ts": 1.0}])), LogsReply)
    # more lines than a reply holds are capped, not refused
    assert decode(encode(LogsRequest("r", 0.0, 10**6)), LogsRequest).max_lines == 1000


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300)
    | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"ts": _json, "start_ts": _json, "gauges": _json, "cost": _json,
                              "model": _json, "version": _json, "samples": _json,
                              "throttled": _json}))
def test_any_record_is_read_or_refused_never_a_crash(raw: dict[str, Any]) -> None:
    for record in (raw, {**raw, "ts": 10.0, "start_ts": 5.0}):
        try:
            parsed = parse_health(record)
        except SchemaError:
            continue
        for lo, mean, hi in parsed.gauges.values():
            assert lo <= mean <= hi
