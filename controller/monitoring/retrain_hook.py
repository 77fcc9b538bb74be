"""The continuous-training hook: an alert of a configured kind runs a command or calls a webhook.

The contract (docs/monitoring.md, "Continuous training hook"):

* **Command** (``retrain_command``, split like a shell line, run without a shell, in its own
  output directory as working directory). Its stdin is the alert context as JSON; the same
  context is in ``$EDGEWISE_CONTEXT_FILE``, and the main fields are in environment variables:
  ``EDGEWISE_ALERT_KIND``, ``EDGEWISE_MODEL``, ``EDGEWISE_MODEL_VERSION``, ``EDGEWISE_DEVICES``
  (comma-separated), ``EDGEWISE_OUTPUT_DIR``, ``EDGEWISE_RUN_ID``, and
  ``EDGEWISE_TRAINING_DATA``: the path of ``training_data.parquet`` in the output directory,
  the model's predictions of the last 30 days as `edgewise data export` writes them (inputs,
  predictions, labels that came back, devices, versions); empty when there were none. The
  context's ``training_data`` holds the same path (a webhook's pipeline fetches the data with
  ``GET /api/v1/data/export`` instead).
  To hand back a model it either writes ``model.joblib`` (or ``model.pkl``) and ``sample.npy``
  (optionally ``labels.npy``) into ``$EDGEWISE_OUTPUT_DIR``, or prints as its last line of
  output a JSON object ``{"model_file": ..., "sample_file": ..., "labels_file": ...}`` (paths
  absolute or relative to the output directory; ``labels_file`` optional). Exit code 0 and
  neither: nothing to register (the hook only notified). Any other exit code: a failed run.
* **Webhook** (``retrain_webhook``): the context is POSTed as JSON; any 2xx is success. A
  webhook cannot hand back files: the pipeline behind it pushes its model with
  ``edgewise models push`` (or the REST API) like any other.

This module runs the command (an asyncio subprocess, killed on timeout or cancellation) or
posts the webhook (blocking; the controller calls it in a worker thread) and checks what came
back; the conversion, registration and canary are the controller's
(:mod:`controller.monitoring.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTEXT_SCHEMA = 1
MODEL_NAMES = ("model.joblib", "model.pkl")
SAMPLE_NAME = "sample.npy"
LABELS_NAME = "labels.npy"
_OUTPUT_TAIL = 2000  # characters of stdout/stderr kept in the run's detail


class HookError(Exception):
    """The hook ran but did not do what the contract asks; the message says what."""


@dataclass(frozen=True)
class ProducedModel:
    model_file: Path
    sample_file: Path
    labels_file: Path | None = None


@dataclass(frozen=True)
class HookResult:
    status: str  # "ok" (model produced), "no_model", "failed"
    detail: str
    produced: ProducedModel | None = None


def build_context(*, run_id: int, kind: str, model: str, version: int | None,
                  devices: list[str], alerts: list[dict[str, Any]], fired_at: float,
                  output_dir: Path, controller_url: str | None) -> dict[str, Any]:
    """The alert context handed to the command (stdin) or the webhook (POST body)."""
    return {
        "schema": CONTEXT_SCHEMA,
        "event": "alert",
        "run_id": run_id,
        "kind": kind,
        "model": model,
        "version": version,
        "devices": devices,
        "alerts": alerts,
        "fired_at": fired_at,
        "output_dir": str(output_dir),
        "controller_url": controller_url,
        "contract": ("write model.joblib (or model.pkl) and sample.npy (labels.npy optional) "
                     "into output_dir, or print a JSON line {\"model_file\", \"sample_file\", "
                     "\"labels_file\"}; exit 0"),
    }


async def run_command(command: str, context: dict[str, Any], output_dir: Path,
                      timeout: float) -> HookResult:
    """Run the retraining command with the context; find the model it produced, if any.

    The command is killed on timeout, and when the caller is cancelled (controller stopping).
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return HookResult("failed", f"retrain_command cannot be parsed: {exc}")
    if not argv:
        return HookResult("failed", "retrain_command is empty")
    output_dir.mkdir(parents=True, exist_ok=True)
    context_file = output_dir / "context.json"
    blob = json.dumps(context, indent=2, sort_keys=True, default=str)
    context_file.write_text(blob)
    env = {
        **os.environ,
        "EDGEWISE_ALERT_KIND": str(context["kind"]),
        "EDGEWISE_MODEL": str(context["model"]),
        "EDGEWISE_MODEL_VERSION": "" if context["version"] is None else str(context["version"]),
        "EDGEWISE_DEVICES": ",".join(context["devices"]),
        "EDGEWISE_OUTPUT_DIR": str(output_dir),
        "EDGEWISE_CONTEXT_FILE": str(context_file),
        "EDGEWISE_RUN_ID": str(context["run_id"]),
        # the fleet's predictions as a training set (Parquet), when there were any
        "EDGEWISE_TRAINING_DATA": str(context.get("training_data") or ""),
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=output_dir, env=env)
    except FileNotFoundError:
        return HookResult("failed", f"retrain_command {argv[0]!r} not found; give a full path")
    except OSError as exc:
        return HookResult("failed", f"retrain_command could not start: {exc}")
    try:
        out, err = await asyncio.wait_for(proc.communicate(blob.encode()), timeout)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        return HookResult("failed", f"retrain_command ran longer than {timeout:g} s and was "
                                    "killed; raise retrain_timeout_s if it needs longer")
    except asyncio.CancelledError:
        _kill(proc)
        raise
    stdout = out.decode("utf-8", errors="replace")
    tail = _tail(stdout, err.decode("utf-8", errors="replace"))
    if proc.returncode != 0:
        return HookResult("failed", f"retrain_command exited with {proc.returncode}: {tail}")
    try:
        produced = find_output(output_dir, stdout)
    except HookError as exc:
        return HookResult("failed", f"{exc}; output: {tail}")
    if produced is None:
        return HookResult("no_model", f"the command produced no model (notified only): {tail}")
    return HookResult("ok", f"model produced: {produced.model_file.name}", produced)


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def find_output(output_dir: Path, stdout: str) -> ProducedModel | None:
    """The model the command handed back: its JSON line, else the files by name, else None."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if lines and lines[-1].startswith("{"):
        try:
            spec = json.loads(lines[-1])
        except ValueError as exc:
            raise HookError(f"the last line of output looks like JSON but is not: {exc}") from None
        if isinstance(spec, dict) and "model_file" in spec:
            if "sample_file" not in spec:
                raise HookError("the JSON output names a model_file but no sample_file")
            labels = spec.get("labels_file")
            return ProducedModel(_existing(output_dir, spec["model_file"], "model_file"),
                                 _existing(output_dir, spec["sample_file"], "sample_file"),
                                 _existing(output_dir, labels, "labels_file") if labels else None)
    model = next((output_dir / n for n in MODEL_NAMES if (output_dir / n).is_file()), None)
    if model is None:
        return None
    sample = output_dir / SAMPLE_NAME
    if not sample.is_file():
        raise HookError(f"{model.name} was written but {SAMPLE_NAME} is missing: the converter "
                        "needs sample rows for its parity check and reference profile")
    labels_path = output_dir / LABELS_NAME
    return ProducedModel(model, sample, labels_path if labels_path.is_file() else None)


def _existing(base: Path, value: Any, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise HookError(f"{what} must be a path")
    path = Path(value)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise HookError(f"{what} {path} does not exist")
    return path


def post_webhook(url: str, context: dict[str, Any], timeout: float) -> HookResult:
    import httpx

    try:
        response = httpx.post(url, json=context, timeout=timeout)
    except httpx.HTTPError as exc:
        return HookResult("failed", f"webhook {url} unreachable: {exc}")
    if 200 <= response.status_code < 300:
        return HookResult("no_model", f"webhook {url} answered {response.status_code}")
    return HookResult("failed", f"webhook {url} answered {response.status_code}: "
                                f"{response.text[:_OUTPUT_TAIL]}")


def _tail(stdout: str, stderr: str) -> str:
    text = (stdout.strip() + ("\n" + stderr.strip() if stderr.strip() else "")).strip()
    return text[-_OUTPUT_TAIL:] if text else "(no output)"
