from __future__ import annotations

import subprocess
import sys

import pytest

from edge_agent.update.diagram import mermaid, render
from edge_agent.update.resume import RESUME_MAP, ResumeAction, resume
from edge_agent.update.state_machine import (
    REST_STATES,
    TABLE,
    Event,
    UpdateState,
    advance,
    idle,
)
from edgewise_wire.message_base import ModelRef
from tests.harness.paths import REPO_ROOT

ROOT = REPO_ROOT
DOC = ROOT / "docs" / "agent-lifecycle.md"


def test_every_state_has_a_resume_entry() -> None:
    assert set(RESUME_MAP) == set(UpdateState)


def test_every_action_has_a_sentence() -> None:
    for action in ResumeAction:
        assert action.sentence.endswith(".") and len(action.sentence) > 20


def test_only_rest_states_resume_with_nothing() -> None:
    for state, action in RESUME_MAP.items():
        assert (action is ResumeAction.NOTHING) == (state in REST_STATES), state


@pytest.mark.parametrize(("state", "action"), [
    (UpdateState.DOWNLOADING, ResumeAction.RESUME_DOWNLOAD),
    (UpdateState.VERIFYING, ResumeAction.REVERIFY),
    (UpdateState.STAGED, ResumeAction.REVERIFY_STAGED),
    (UpdateState.ACTIVATING, ResumeAction.REDO_ACTIVATION),
    (UpdateState.PROBATION, ResumeAction.RESTART_PROBATION),
    (UpdateState.ROLLING_BACK, ResumeAction.FINISH_ROLLBACK),
], ids=lambda x: x.name)
def test_resume_map_entries(state: UpdateState, action: ResumeAction) -> None:
    assert RESUME_MAP[state] is action


def test_resume_after_the_cap_finishes_a_rollback() -> None:
    step = advance(idle(now=0.0, running=ModelRef("m", 1, "a" * 64)), Event.NEW_TARGET, now=1.0,
                   target=ModelRef("m", 2, "b" * 64))
    for _ in range(3):
        step = advance(step, Event.SUCCESS, now=2.0)
    assert step.state is UpdateState.ACTIVATING
    actions = []
    for i in range(3):
        step, action, _ = resume(step, now=3.0 + i)
        actions.append(action)
    assert actions == [ResumeAction.REDO_ACTIVATION, ResumeAction.REDO_ACTIVATION,
                       ResumeAction.FINISH_ROLLBACK]
    assert step.state is UpdateState.ROLLING_BACK


def test_mermaid_has_every_transition() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2")
    for (src, event), dst in TABLE.items():
        line = next(x for x in text.splitlines() if x.strip().startswith(f"{src.value} --> {dst.value}:"))
        assert event.name in line


def test_committed_doc_equals_generated_output() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/agent-lifecycle.md is stale: run "
        "`python -m edge_agent.update.diagram > docs/agent-lifecycle.md`"
    )


def test_module_prints_the_doc() -> None:
    out = subprocess.run([sys.executable, "-m", "edge_agent.update.diagram"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == render()
