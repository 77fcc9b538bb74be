"""The exit codes of every `edgewise` command, in one table.

0 and 1 are success and error; 2 is click's usage error (a bad option or argument, nothing was
done). Every other code is an *outcome* a script may want to branch on without parsing text: a
rollout that aborted is not a usage error, and an alert firing is not a failure to run. docs/cli.md
shows the same table (a test compares the two).
"""

from __future__ import annotations

import textwrap
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    TIMED_OUT = 3
    ROLLOUT_PAUSED = 4
    ROLLOUT_FAILED = 5
    ROLLOUT_ABORTED = 6
    ALERTS_FIRING = 7
    CHECKS_FAILED = 8
    CONVERSION_FAILED = 9


# what each code means and which commands end with it; docs/cli.md repeats this table
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done: the command did what it was asked (a rollout completed, nothing fires)",
    ExitCode.ERROR: "error: refused by the controller, unreachable broker, database or "
                    "controller, a file that cannot be read; stderr has one line saying why",
    ExitCode.USAGE: "usage error: a bad option or argument (click's check or the command's "
                    "own); nothing was done",
    ExitCode.TIMED_OUT: "`--wait --timeout` passed; the work goes on (`edgewise rollout status "
                        "ID --wait`)",
    ExitCode.ROLLOUT_PAUSED: "rollout paused: a gate failed with `--on-gate-failure pause`, or "
                             "an operator paused it",
    ExitCode.ROLLOUT_FAILED: "rollout failed: aborted, but some devices never confirmed their "
                             "revert",
    ExitCode.ROLLOUT_ABORTED: "rollout aborted: a gate failed (or an operator aborted); the "
                              "moved devices were sent back to what they ran before",
    ExitCode.ALERTS_FIRING: "`edgewise alerts`: at least one alert fires",
    ExitCode.CHECKS_FAILED: "`edgewise simulate --scenario`: the scenario ran and a check of "
                            "its [expect] failed",
    ExitCode.CONVERSION_FAILED: "`edgewise convert` / `models push`: an artifact could not be "
                                "made or failed verification (the others are still written)",
}


def exit_codes_help(*codes: ExitCode, title: str = "Exit codes") -> str:
    """An epilog for ``--help`` listing ``codes`` (all of them when none is given), in the
    words of :data:`MEANINGS`; ``\\b`` keeps click from rewrapping it."""
    chosen = codes or tuple(ExitCode)
    lines = ["\b", f"{title}:"]
    for code in chosen:
        lines += textwrap.wrap(MEANINGS[code], 76, initial_indent=f"  {int(code)}  ",
                               subsequent_indent="     ")
    return "\n".join(lines)
