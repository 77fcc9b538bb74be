"""Schemathesis over HTTP against a real ``edgewise controller serve`` process (real broker, an
API token, the iris model registered): for every operation of the OpenAPI document the process
serves, generated input never gets an answer >= 500 (``not_a_server_error``).

The in-process fuzzing (tests/integration/controller/web/test_api_fuzz.py) also checks response
schemas over a populated fleet; this one goes through uvicorn and the body limits in front of the
app, as a client would. Bounded by ``EDGEWISE_FUZZ_EXAMPLES`` examples per operation (default 3;
half as many invalid ones) so it stays within about a minute.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

try:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
except ImportError as exc:  # a dev extra; CI installs it, so there a missing one is a failure
    if os.environ.get("CI"):
        raise
    pytest.skip(f"schemathesis is not installed ({exc}): pip install -e '.[dev]'",
                allow_module_level=True)

from controller.cli.client import ControllerClient
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from tests.harness.iris_models import IrisModels

pytestmark = [pytest.mark.broker]

TOKEN = "schemathesis-admin-token"
EXAMPLES = int(os.environ.get("EDGEWISE_FUZZ_EXAMPLES", "3"))


@pytest.fixture(scope="module")
def served_schema(broker: BrokerProcess, tmp_path_factory: pytest.TempPathFactory,
                  iris_models: IrisModels) -> Iterator[Any]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    proc, url = start_controller(workdir, broker, extra_args=["--api-token", TOKEN])
    client = ControllerClient(url, token=TOKEN, timeout=30)
    try:
        client.push_version(iris_models.a.manifest, iris_models.a.data)
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json",
                                               headers={"Authorization": f"Bearer {TOKEN}"})
        schema.config.base_url = url
        yield schema
    finally:
        client.close()
        stop_process(proc)


def test_no_generated_input_gets_a_server_error(served_schema: Any) -> None:
    """Each operation in turn, positive and negative generation (one hypothesis run per
    operation and mode, inside this test: the schema comes from the running process, which a
    module-level parametrization could not wait for)."""
    failures: list[str] = []
    operations = [result.ok() for result in served_schema.get_all_operations()]
    assert len(operations) > 30

    for operation in operations:
        for mode, examples in ((GenerationMode.POSITIVE, EXAMPLES),
                               (GenerationMode.NEGATIVE, max(1, EXAMPLES // 2))):
            @given(operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            def run(case: Any) -> None:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
                if case.path.endswith("/logs"):  # asks the device over MQTT: a short wait
                    case.query = {**(case.query or {}), "timeout": 0.5}
                response = case.call(timeout=30)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} answered "
                                    f"{response.status_code}: {response.text[:300]}\n"
                                    f"reproduce: {case.as_curl_command()}")
                case.validate_response(response, checks=[not_a_server_error])

            try:
                run()
            except Unsatisfiable:
                pass  # nothing in this operation to make invalid (no parameters, no body)
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                if not failures or operation.label not in failures[-1]:
                    failures.append(f"{operation.label} ({mode.value}): {exc!s:.500}")
    assert not failures, "\n".join(failures[:20])
