"""Monitoring at the controller: metrics windows, alerts and the retraining hook.

Pure cores: the window rules (``rules``), their hysteresis (``hysteresis``) and how sequential
tests' decisions become alerts (``sequential_alerts``); the tests themselves are in
:mod:`edgewise_monitoring`. ``metrics_store`` and ``alert_store`` persist; ``service`` runs the
evaluation loop and the retraining hook; ``api`` and ``cli`` show it."""

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
    judge_silence,
    judge_window,
)

__all__ = [
    "ALERT_KINDS", "CLEARED", "FIRED", "AlertEvent", "AlertKind", "AlertRules", "AlertState",
    "DeviceSeen", "Evaluation", "StateKey", "Verdict", "WindowObservation",
    "evaluate", "judge_silence", "judge_window", "step",
]
