"""Where the agent picks up after a crash: one written-down action per update state.

The agent loads its last persisted :class:`UpdateStep`, lets
:func:`~edge_agent.update.state_machine.on_restart` count the attempt (and give up past the cap),
then does :data:`RESUME_MAP` of the resulting state. Every action is safe to repeat, because the
agent may crash again half-way through it. ``docs/agent-lifecycle.md`` is generated from this map.
"""

from __future__ import annotations

from enum import Enum

from edge_agent.update.state_machine import (
    MAX_ATTEMPTS_PER_STATE,
    UpdateState,
    UpdateStep,
    on_restart,
)


class ResumeAction(Enum):
    NOTHING = "nothing"
    RESUME_DOWNLOAD = "resume_download"
    REVERIFY = "reverify"
    REVERIFY_STAGED = "reverify_staged"
    REDO_ACTIVATION = "redo_activation"
    RESTART_PROBATION = "restart_probation"
    FINISH_ROLLBACK = "finish_rollback"

    @property
    def sentence(self) -> str:
        return _SENTENCES[self]


_SENTENCES: dict[ResumeAction, str] = {
    ResumeAction.NOTHING:
        "Nothing is in flight: serve the active slot and wait for the next desired state.",
    ResumeAction.RESUME_DOWNLOAD:
        "Keep the chunks whose sha256 matches the manifest, drop the rest, and request only the "
        "missing chunks (repair).",
    ResumeAction.REVERIFY:
        "Verify the assembled file again from scratch (length and sha256 against the manifest "
        "whose signature was checked before the download): a check cut short proves nothing; "
        "an incomplete file goes back to downloading its missing chunks.",
    ResumeAction.REVERIFY_STAGED:
        "Re-verify the staged slot (length, sha256) before going on to activation; if it is torn, "
        "download again.",
    ResumeAction.REDO_ACTIVATION:
        "The previous slot is authoritative: if the pointer already names the new model, point "
        "it back and serve the previous one, then run the activation again (load, smoke test, "
        "switch); past the attempt cap, roll back instead.",
    ResumeAction.RESTART_PROBATION:
        "The new slot serves; start the health window again from zero (the crash itself counts "
        "against the attempt cap).",
    ResumeAction.FINISH_ROLLBACK:
        "Finish the rollback: point the active slot at the previous model, load it and report; "
        "each step is idempotent.",
}

RESUME_MAP: dict[UpdateState, ResumeAction] = {
    UpdateState.IDLE: ResumeAction.NOTHING,
    UpdateState.DOWNLOADING: ResumeAction.RESUME_DOWNLOAD,
    UpdateState.VERIFYING: ResumeAction.REVERIFY,
    UpdateState.STAGED: ResumeAction.REVERIFY_STAGED,
    UpdateState.ACTIVATING: ResumeAction.REDO_ACTIVATION,
    UpdateState.PROBATION: ResumeAction.RESTART_PROBATION,
    UpdateState.ACTIVE: ResumeAction.NOTHING,
    UpdateState.FAILED: ResumeAction.NOTHING,
    UpdateState.ROLLING_BACK: ResumeAction.FINISH_ROLLBACK,
    UpdateState.ROLLED_BACK: ResumeAction.NOTHING,
}


def resume(
    step: UpdateStep, *, now: float, max_attempts_per_state: int = MAX_ATTEMPTS_PER_STATE
) -> tuple[UpdateStep, ResumeAction, str]:
    """After a restart: the step to persist, the action to take in its state, and why."""
    resumed, reason = on_restart(step, now=now, max_attempts_per_state=max_attempts_per_state)
    return resumed, RESUME_MAP[resumed.state], reason
