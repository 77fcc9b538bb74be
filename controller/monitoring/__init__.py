"""Alert logic: verdicts per metrics window, hysteresis per (kind, device). Pure: no database,
no MQTT, no clock (time is an argument). ``controller/monitoring/alert_store.py`` persists the states and
events; ``controller/monitoring/service.py`` runs the evaluation loop and the retraining hook."""

from controller.monitoring.hysteresis import (
    CLEARED,
    FIRED,
    AlertEvent,
    AlertState,
    Evaluation,
    StateKey,
    evaluate,
    step,
)
from controller.monitoring.rules import (
    ALERT_KINDS,
    AlertKind,
    AlertRules,
    DeviceSeen,
    Verdict,
    WindowObservation,
    accuracy_threshold,
    judge_silence,
    judge_window,
)

__all__ = [
    "ALERT_KINDS", "CLEARED", "FIRED", "AlertEvent", "AlertKind", "AlertRules", "AlertState",
    "DeviceSeen", "Evaluation", "StateKey", "Verdict", "WindowObservation", "accuracy_threshold",
    "evaluate", "judge_silence", "judge_window", "step",
]
