"""`edgewise data export` and `edgewise data retention` through the REST API (served by
uvicorn) and the CLI: the file, and one-line errors for an unknown model, an empty range and a
path that cannot be written."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner, Result

from controller.app.cli import cli
from tests.harness.api_server import serving
from tests.harness.web_fleet import Fleet


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--controller", url, *args])


def test_export_writes_the_predictions(fresh: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "iris.parquet"
    with serving(fresh.controller) as url:
        r = run(url, "data", "export", "iris", "--out", str(out), "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["path"] == str(out)
        table = pq.read_table(out)
        assert table.num_rows == 15  # b-1: 10 of v1, b-2: 5 of v2 (tests/harness/web_fleet.py)
        assert sorted(set(table.column("device_id").to_pylist())) == ["b-1", "b-2"]
        assert "device.site" in table.column_names
        r = run(url, "data", "export", "iris:2", "--format", "csv", "--out",
                str(tmp_path / "v2.csv"))
        assert r.exit_code == 0, r.output
        assert (tmp_path / "v2.csv").read_text().count("\n") == 6  # header + 5 rows


def test_export_samples_per_group(fresh: Fleet, tmp_path: Path) -> None:
    with serving(fresh.controller) as url:
        # berlin's own share keeps every one of its predictions; the column says the share
        out = tmp_path / "berlin.parquet"
        r = run(url, "data", "export", "iris", "--sample", "0.01", "--sample-by", "site",
                "--sample-share", "berlin=1", "--out", str(out))
        assert r.exit_code == 0, r.output
        table = pq.read_table(out)
        assert table.num_rows == 15 and set(table.column("sample_share").to_pylist()) == {1.0}
        # a half, the same rows for the same seed
        pids = []
        for name in ("half-1", "half-2"):
            out = tmp_path / f"{name}.parquet"
            r = run(url, "data", "export", "iris", "--sample", "0.5", "--seed", "4", "--out",
                    str(out))
            assert r.exit_code == 0, r.output
            half = pq.read_table(out)
            assert set(half.column("sample_share").to_pylist()) <= {0.5}
            pids.append(half.column("prediction_id").to_pylist())
        assert pids[0] == pids[1] and len(pids[0]) < 15


def test_export_errors_are_one_line(fresh: Fleet, tmp_path: Path) -> None:
    with serving(fresh.controller) as url:
        cases = {
            "unknown model": (["nope"], "404"),
            "unknown version": (["iris:9"], "404"),
            "empty range": (["iris", "--since", "9000000000"], "no predictions of iris since"),
            "bad selector": (["iris", "--selector", "site=="], "422"),
            "bad share": (["iris", "--sample-by", "site", "--sample-share", "berlin"],
                          "write GROUP=SHARE"),
        }
        for name, (args, expected) in cases.items():
            out = tmp_path / f"{name.replace(' ', '-')}.parquet"
            r = run(url, "data", "export", *args, "--out", str(out))
            assert r.exit_code == 1, (name, r.output)
            assert r.output.count("\n") == 1 and r.output.startswith("error: "), (name, r.output)
            assert expected in r.output, (name, r.output)
            assert not out.exists() and not list(tmp_path.glob(".*part*")), name
        r = run(url, "data", "export", "iris", "--out", str(tmp_path / "no" / "dir" / "x.pq"))
        assert r.exit_code == 1 and r.output.startswith("error: cannot write"), r.output
        assert r.output.count("\n") == 1


def test_retention_reports_what_it_deleted(fresh: Fleet) -> None:
    before = fresh.controller.telemetry.count()
    with serving(fresh.controller) as url:
        r = run(url, "data", "retention", "--rows", "5", "--json")
        assert r.exit_code == 0, r.output
        result = json.loads(r.output)
        assert result["deleted"] == before - fresh.controller.telemetry.count()
        assert result["kept"] == fresh.controller.telemetry.count() >= 5
        r = run(url, "data", "retention")
        assert r.exit_code == 2 and "--days" in r.output


def test_the_retraining_hook_gets_the_export(fresh: Fleet, tmp_path: Path) -> None:
    """The command's environment names the training data the controller exported for it."""
    import asyncio
    import sys

    from controller.monitoring.retrain_hook import build_context, run_command

    service = fresh.controller.monitoring
    out_dir = tmp_path / "run-1"
    path = asyncio.run(service._training_data("iris", out_dir))
    assert path == str(out_dir / "training_data.parquet")
    assert pq.read_table(path).num_rows == 15
    assert asyncio.run(service._training_data("nope", tmp_path / "run-2")) is None
    context = build_context(run_id=1, kind="accuracy", model="iris", version=1, devices=["b-1"],
                            alerts=[], fired_at=0.0, output_dir=out_dir, controller_url=None)
    context["training_data"] = path
    script = ("import os, pyarrow.parquet as pq; "
              "print(pq.read_table(os.environ['EDGEWISE_TRAINING_DATA']).num_rows)")
    result = asyncio.run(run_command(f"{sys.executable} -c \"{script}\"", context, out_dir, 60))
    assert result.status == "no_model" and "15" in result.detail, result
