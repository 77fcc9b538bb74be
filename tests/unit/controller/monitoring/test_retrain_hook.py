"""The retraining hook's contract: context on stdin and in the environment; a model handed back
as files or as a JSON line; failures and time-outs reported in words."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

import pytest

from controller.monitoring.retrain_hook import HookResult, build_context, run_command


def context(tmp_path: Path) -> dict:
    return build_context(run_id=3, kind="accuracy", model="iris", version=1,
                         devices=["d1", "d2"], alerts=[{"device_id": "d1"}], fired_at=1.5,
                         output_dir=tmp_path / "out", controller_url="http://127.0.0.1:8700")


def run(tmp_path: Path, script: str, timeout: float = 30.0) -> HookResult:
    path = tmp_path / "hook.py"
    path.write_text(script)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}"
    return asyncio.run(run_command(command, context(tmp_path), tmp_path / "out", timeout))


def test_context_arrives_on_stdin_in_a_file_and_in_the_environment(tmp_path: Path) -> None:
    result = run(tmp_path, """
import json, os, sys
ctx = json.load(sys.stdin)
same = json.load(open(os.environ["EDGEWISE_CONTEXT_FILE"])) == ctx
env = {k: os.environ[k] for k in ("EDGEWISE_ALERT_KIND", "EDGEWISE_MODEL",
       "EDGEWISE_MODEL_VERSION", "EDGEWISE_DEVICES", "EDGEWISE_RUN_ID")}
open("seen.json", "w").write(json.dumps({"ctx": ctx, "same": same, "env": env,
                                         "cwd": os.getcwd()}))
""")
    assert result.status == "no_model", result.detail
    seen = json.loads((tmp_path / "out" / "seen.json").read_text())
    assert seen["same"] and seen["ctx"]["kind"] == "accuracy" and seen["ctx"]["devices"] == ["d1", "d2"]
    assert seen["env"] == {"EDGEWISE_ALERT_KIND": "accuracy", "EDGEWISE_MODEL": "iris",
                           "EDGEWISE_MODEL_VERSION": "1", "EDGEWISE_DEVICES": "d1,d2",
                           "EDGEWISE_RUN_ID": "3"}
    assert Path(seen["cwd"]) == tmp_path / "out"


def test_a_model_handed_back_as_files(tmp_path: Path) -> None:
    result = run(tmp_path, """
open("model.joblib", "wb").write(b"x"); open("sample.npy", "wb").write(b"y")
open("labels.npy", "wb").write(b"z")
""")
    assert result.status == "ok" and result.produced is not None
    assert result.produced.model_file.name == "model.joblib"
    assert result.produced.labels_file is not None


def test_a_model_handed_back_as_a_json_line(tmp_path: Path) -> None:
    (tmp_path / "m.pkl").write_bytes(b"x")
    (tmp_path / "s.npy").write_bytes(b"y")
    result = run(tmp_path, f"""
print("training ...")
print('{{"model_file": "{tmp_path / 'm.pkl'}", "sample_file": "{tmp_path / 's.npy'}"}}')
""")
    assert result.status == "ok" and result.produced is not None
    assert result.produced.model_file == tmp_path / "m.pkl" and result.produced.labels_file is None


@pytest.mark.parametrize("script, words", [
    ("import sys; print('boom'); sys.exit(3)", ("exited with 3", "boom")),
    ("open('model.joblib', 'wb').write(b'x')", ("sample.npy is missing",)),
    ("print('{\"model_file\": \"nope.joblib\", \"sample_file\": \"s.npy\"}')", ("does not exist",)),
    ("print('{\"model_file\": ')", ("looks like JSON but is not",)),
])
def test_broken_hooks_fail_with_a_reason(tmp_path: Path, script: str, words: tuple[str, ...]) -> None:
    result = run(tmp_path, script)
    assert result.status == "failed"
    for word in words:
        assert word in result.detail


def test_a_hook_that_runs_too_long_is_killed(tmp_path: Path) -> None:
    result = run(tmp_path, "import time; time.sleep(30)", timeout=0.5)
    assert result.status == "failed" and "longer than 0.5 s" in result.detail


def test_a_missing_program_is_named(tmp_path: Path) -> None:
    result = asyncio.run(run_command("/nonexistent/retrain --x", context(tmp_path),
                                     tmp_path / "out", 5))
    assert result.status == "failed" and "not found" in result.detail


def test_hook_settings_are_checked_at_start() -> None:
    from controller.config import ControllerConfig
    from controller.errors import ValidationError
    from controller.monitoring.service import retrain_kinds, rules_from_config

    assert retrain_kinds(ControllerConfig()) == ()
    assert retrain_kinds(ControllerConfig(retrain_on="accuracy, drift",
                                          retrain_webhook="http://x/")) == ("accuracy", "drift")
    with pytest.raises(ValidationError, match="unknown alert kinds"):
        retrain_kinds(ControllerConfig(retrain_on="acuracy", retrain_command="x"))
    with pytest.raises(ValidationError, match="neither retrain_command nor retrain_webhook"):
        retrain_kinds(ControllerConfig(retrain_on="accuracy"))
    with pytest.raises(ValidationError, match="alert settings"):
        rules_from_config(ControllerConfig(alert_fire_after=0))
