"""`models push` of a mixed-type pipeline with a .parquet sample: the artifact goes through the
registry to a real agent daemon on a real broker, which passes the smoke tests (rows of named,
mixed-type fields) and serves records on its local API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import joblib
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from controller.app.cli import cli
from simulator.broker import BrokerProcess, free_port
from simulator.demo import start_controller, stop_process
from tests.harness.tabular import mixed_frame, mixed_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.slow]
pd = pytest.importorskip("pandas")


def test_push_a_mixed_type_pipeline_roll_it_out_and_predict_records(
        fresh_broker: BrokerProcess, tmp_path: Path) -> None:
    frame, labels, _ = mixed_frame()
    model = mixed_pipeline(LogisticRegression(max_iter=500)).fit(frame, labels)
    joblib.dump(model, tmp_path / "churn.joblib")
    frame.to_parquet(tmp_path / "customers.parquet")
    pd.DataFrame({"y": labels}).to_csv(tmp_path / "labels.csv", index=False)
    controller, url = start_controller(tmp_path / "controller", fresh_broker)
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "pi-table-1"\ndata_dir = "{tmp_path / "agent"}"\n'
                      f'http_port = {port}\n'
                      f'[broker]\nhost = "127.0.0.1"\nport = {fresh_broker.port}\n')
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.daemon", "--config", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    runner = CliRunner()
    base = ["--controller", url]
    try:
        pushed = runner.invoke(cli, [*base, "models", "push", str(tmp_path / "churn.joblib"),
                                     "--sample", str(tmp_path / "customers.parquet"),
                                     "--labels", str(tmp_path / "labels.csv")])
        assert pushed.exit_code == 0, pushed.output
        for _ in range(100):  # the daemon registers on first contact
            fleet = json.loads(runner.invoke(cli, [*base, "fleet", "--json"]).output)
            if [d for d in fleet if d["device_id"] == "pi-table-1"]:
                break
            time.sleep(0.1)
        rolled = runner.invoke(cli, [*base, "rollout", "start", "churn", "--wait",
                                     "--timeout", "60"])
        if rolled.exit_code != 0:
            agent.terminate()
            detail = agent.stdout.read().decode()[-3000:] if agent.stdout else ""
            pytest.fail(f"rollout did not finish: {rolled.output[-300:]}\n{detail}")
        rows = json.loads(frame.head(20).to_json(orient="records"))
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"records": rows},
                            timeout=10)
        assert answer.status_code == 200, answer.text
        assert [p["label"] for p in answer.json()["predictions"]] == \
            model.predict(frame.head(20)).tolist()
        bad = httpx.post(f"http://127.0.0.1:{port}/v1/predict",
                         json={"records": [{**rows[0], "colour": "purple"}]}, timeout=10)
        assert bad.status_code == 422 and "unseen category 'purple'" in bad.json()["error"]
    finally:
        agent.terminate()
        agent.wait(10)
        stop_process(controller)
