"""The conventions of docs/cli.md, checked on the whole `edgewise` command tree: every command
that prints takes ``--json`` (through the one shared option), long work takes ``--quiet``, the
exit-code table of the docs is the enum's, and ``--version`` tells the distribution's version."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from controller.app.cli import cli
from controller.cli.exit_codes import MEANINGS, ExitCode, exit_codes_help
from edgewise_wire.version import edgewise_version

ROOT = Path(__file__).resolve().parents[4]

# Commands without --json, each with the reason. Only commands that print nothing on stdout or
# stream binary belong here; everything else that prints must take --json.
WITHOUT_JSON = {
    # a daemon: nothing on stdout; its log ("controller API on ...") goes to stderr
    "controller serve": "daemon, log on stderr",
}

# long work: progress on stderr while it runs, silenced by --quiet
LONG_WORK = ("convert", "models push", "simulate")


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            if command.invoke_without_command:  # it runs (and prints) on its own too
                yield f"{prefix}{name}", command
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


COMMANDS = dict(_commands(cli))


def _option(command: click.Command, flag: str) -> click.Option | None:
    return next((p for p in command.params if isinstance(p, click.Option) and flag in p.opts),
                None)


def test_the_tree_is_walked_whole() -> None:
    # a walker that stopped at the groups would check nothing
    assert {"fleet", "models push", "rollout start", "tokens create", "devices enroll",
            "keys rotate", "pki init", "broker config", "alerts"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_printing_command_takes_json(name: str) -> None:
    command = COMMANDS[name]
    option = _option(command, "--json")
    if name in WITHOUT_JSON:
        assert option is None, f"`edgewise {name}` has --json now: take it off WITHOUT_JSON"
        return
    assert option is not None, (f"`edgewise {name}` prints but has no --json: add "
                                "@json_option (controller/cli/common.py) and print through emit")
    assert option.is_flag and option.name == "as_json", f"`edgewise {name}`: use json_option"


def test_the_allow_list_names_only_commands_that_exist() -> None:
    assert set(WITHOUT_JSON) <= set(COMMANDS)


@pytest.mark.parametrize("name", LONG_WORK)
def test_long_work_can_be_quiet(name: str) -> None:
    option = _option(COMMANDS[name], "--quiet")
    assert option is not None and option.is_flag, f"`edgewise {name}` has no --quiet"
    assert option.envvar == "EDGEWISE_QUIET"


def _documented_exit_codes() -> list[tuple[int, str, str]]:
    text = (ROOT / "docs" / "cli.md").read_text()
    block = text.split("<!-- exit-codes:begin -->", 1)[1].split("<!-- exit-codes:end -->", 1)[0]
    rows = []
    for line in block.splitlines():
        match = re.match(r"^\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|\s*(.*?)\s*\|$", line)
        if match:
            rows.append((int(match.group(1)), match.group(2), match.group(3)))
    return rows


def test_the_docs_exit_code_table_is_the_enum() -> None:
    assert _documented_exit_codes() == [(int(c), c.name, MEANINGS[c]) for c in ExitCode]


def test_exit_codes_are_distinct_and_usage_is_clicks() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode) == len(MEANINGS)
    assert ExitCode.USAGE == click.UsageError.exit_code == 2
    assert (ExitCode.OK, ExitCode.ERROR) == (0, 1)


def test_help_lists_the_codes_a_command_ends_with() -> None:
    help_text = CliRunner().invoke(cli, ["rollout", "start", "--help"]).output
    assert "6  rollout aborted" in help_text and "3  `--wait --timeout` passed" in help_text
    assert "7  `edgewise alerts`" in CliRunner().invoke(cli, ["alerts", "--help"]).output
    assert exit_codes_help().count("\n") >= len(ExitCode)


def _pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_is_the_distributions() -> None:
    from importlib import metadata

    assert edgewise_version() == metadata.version("edgewise") == _pyproject_version()
    out = CliRunner().invoke(cli, ["--version"])
    assert out.exit_code == 0 and out.output == f"edgewise {edgewise_version()}\n"


def test_version_falls_back_to_pyproject_then_unknown(tmp_path: Path) -> None:
    assert edgewise_version("edgewise", ROOT / "pyproject.toml") == _pyproject_version()
    other = tmp_path / "pyproject.toml"
    other.write_text('[project]\nname = "not-installed-anywhere"\nversion = "9.8.7"\n')
    assert edgewise_version("not-installed-anywhere", other) == "9.8.7"
    assert edgewise_version("not-installed-anywhere", tmp_path / "missing.toml") == "unknown"
    assert edgewise_version("another-name", other) == "unknown"


def test_agent_version_is_the_same() -> None:
    out = subprocess.run([sys.executable, "-m", "edge_agent.daemon", "--version"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"edgewise-agent {edgewise_version()}\n"
    import edge_agent

    assert edge_agent.__version__ == edgewise_version()


class _Rollouts:
    """What `follow` asks of the client: the rollout's view, here always in one status."""

    def __init__(self, status: str) -> None:
        self.status = status

    def rollout(self, ref: str) -> dict[str, object]:
        return {"id": ref, "status": self.status}


@pytest.mark.parametrize("status, code", [
    ("completed", ExitCode.OK), ("aborted", ExitCode.ROLLOUT_ABORTED),
    ("failed", ExitCode.ROLLOUT_FAILED), ("paused", ExitCode.ROLLOUT_PAUSED),
    ("running", ExitCode.TIMED_OUT),
])
def test_a_followed_rollout_ends_with_the_code_of_how_it_ended(status: str, code: int) -> None:
    from controller.rollouts.cli import follow

    ended = follow(_Rollouts(status), "7", timeout=0.01, as_json=True,  # type: ignore[arg-type]
                   interval=0.01)
    assert ended == code
