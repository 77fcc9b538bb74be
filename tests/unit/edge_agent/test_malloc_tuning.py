"""The daemon fixes glibc's malloc thresholds (edge_agent/malloc_tuning.py)."""

from __future__ import annotations


def test_malloc_thresholds_are_set_on_glibc_linux() -> None:
    """Checked in a child process: mallopt changes the process for good."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "from edge_agent.malloc_tuning import fix_malloc_thresholds as f; "
                               "print(f())"], capture_output=True, text=True, check=True)
    import platform

    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert out.stdout.strip() == expected
