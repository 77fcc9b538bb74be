"""`edgewise experiment`: usage errors stop before any request, in one line; the status text."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from controller.cli.exit_codes import ExitCode
from controller.experiments.cli import experiment, render_experiment


@pytest.mark.parametrize(("args", "message"), [
    (["--against", "iris:1"], "give exactly one of --shadow"),
    (["--shadow", "iris:2", "--ab", "iris:3", "--against", "iris:1"], "give exactly one of"),
    (["--ab", "iris:2", "--against", "iris:1"], "needs --share"),
    (["--ab", "iris:2", "--against", "iris:1", "--share", "150%"], "outside 0-100%"),
    (["--shadow", "iris:2", "--against", "iris:1", "--sample", "-1%"], "outside 0-100%"),
    (["--shadow", "iris", "--against", "iris:1"], "is not MODEL:VERSION"),
], ids=["no-arm", "two-arms", "no-share", "share-above", "sample-below", "bad-ref"])
def test_usage_errors_are_one_line_and_send_nothing(args: list[str], message: str) -> None:
    result = CliRunner().invoke(experiment, ["start", *args], obj={})
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]


def test_status_text_shows_the_arms_the_test_and_the_shadow() -> None:
    arm: dict[str, Any] = {"devices": 2, "rows": 1000, "labelled": 300, "accuracy": 0.9,
                           "accuracy_low": 0.85, "accuracy_high": 0.94, "latency_p95_ms": 0.5,
                           "latency_mean_ms": 0.3, "memory_bytes": 2_000_000, "errors": 0}
    view = {"id": "exp-1", "mode": "shadow", "model": "iris", "candidate": 2, "control": 1,
            "status": "running", "arms": {"control": arm, "candidate": arm},
            "comparison": {"verdict": "candidate_better", "effect": 0.05, "low": 0.01,
                           "high": 0.09, "rows": 300, "predicted_rows": 900, "paired": True},
            "latency": {"verdict": "same", "effect_ms": 0.0, "low_ms": -0.01, "high_ms": 0.01},
            "shadow": {"compared": 1000, "agreement": 0.95, "skipped": 0, "failed": 0,
                       "slow": 0, "disagreements": [["1", "2", 30]]},
            "refused": {"pi-9": "cannot hold two sessions"}, "rollout_id": None}
    text = render_experiment(view)
    assert "candidate_better: accuracy difference +5.00 points" in text
    assert "always-valid CI [+1.00, +9.00]" in text and "300 rows of 900 predicted" in text
    assert "agreement 95.0%" in text and "control 1 -> candidate 2: 30" in text
    assert "refused on pi-9: cannot hold two sessions" in text
