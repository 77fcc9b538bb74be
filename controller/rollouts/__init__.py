"""Rollout decision logic: selectors, specs and wave plans, gates, the engine, conflicts.

Pure code: no database, no MQTT, no clock (time is an argument). The controller's adapters
read observations, call :func:`decide`, act on the decision and persist :func:`apply`'s state.
"""

from controller.fleet.selectors import (
    LabelError,
    Selector,
    SelectorError,
    parse_selector,
    validate_labels,
)
from controller.rollouts.conflicts import ConflictError, Preemption, check_conflict
from controller.rollouts.decisions import (
    Abort,
    Advance,
    Complete,
    Decision,
    Fail,
    Pause,
    Wait,
    decision_to_dict,
)
from controller.rollouts.engine import (
    RolloutState,
    Status,
    TransitionError,
    admit_late_joiners,
    apply,
    decide,
    initial_state,
    late_joiners,
    operator_abort,
    operator_pause,
    release_devices,
    resume,
    skip_devices,
)
from controller.rollouts.gates import (
    DeviceObservation,
    GateResult,
    ModelVersion,
    Observations,
    evaluate_gates,
)
from controller.rollouts.spec import FailureBudget, Gates, RolloutSpec, SpecError, WaveSize
from controller.rollouts.spec_checks import validate
from controller.rollouts.spec_parse import parse_waves, spec_from_dict, spec_to_dict
from controller.rollouts.wave_plan import plan_waves

__all__ = [
    "Abort", "Advance", "Complete", "ConflictError", "Decision", "DeviceObservation", "Fail",
    "FailureBudget", "GateResult", "Gates", "LabelError", "ModelVersion", "Observations", "Pause",
    "Preemption", "RolloutSpec", "RolloutState", "Selector", "SelectorError", "SpecError",
    "Status", "TransitionError", "Wait", "WaveSize", "admit_late_joiners", "apply",
    "check_conflict", "decide", "decision_to_dict", "evaluate_gates", "initial_state", "late_joiners",
    "operator_abort", "operator_pause", "parse_selector", "parse_waves", "plan_waves",
    "release_devices", "resume", "skip_devices", "spec_from_dict", "spec_to_dict", "validate", "validate_labels",
]
