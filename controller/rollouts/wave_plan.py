"""A rollout's wave plan: which devices each wave moves."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from controller.rollouts.spec import SpecError, WaveSize
from controller.rollouts.spec_checks import wave_plan_problems, wave_size_problem


def plan_waves(device_ids: Sequence[str], waves: Sequence[WaveSize],
               salt: str = "") -> list[list[str]]:
    """Split the devices into one disjoint list per wave; each device appears exactly once.

    Wave sizes are cumulative targets (``5%,25%,100%`` of 100 gives 5, 20, 75 devices). Each
    wave gets at least one device, so a small fleet still gets a canary; the devices are
    ordered by ``sha256(salt, id)`` so the canaries are spread and the plan is reproducible.
    """
    ordered = sorted(set(device_ids), key=lambda d: hashlib.sha256(
        f"{salt}\0{d}".encode()).hexdigest())
    total, count = len(ordered), len(waves)
    problems = [p for i, w in enumerate(waves) if (p := wave_size_problem(i, w))]
    problems += wave_plan_problems(waves, total) if total else ["no devices to plan"]
    if problems:
        raise SpecError(problems)
    plan, done = [], 0
    for i, wave in enumerate(waves):
        target = max(wave.target(total), done + 1)
        target = min(target, total - (count - 1 - i))
        plan.append(ordered[done:target])
        done = target
    return plan
