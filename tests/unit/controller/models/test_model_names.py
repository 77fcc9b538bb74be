"""The one model name rule (controller/models/names.py): what it lets through, what it refuses
with the rule in the message, and `models push` refusing a bad name before converting."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.errors import ValidationError
from controller.models.names import MODEL_NAME_RULE, check_model_name, default_model_name

GOOD = ["iris", "a", "0", "iris-2", "iris_v2.small", "m" * 64, "9lives"]
BAD = ["", "Iris", "a b", "a/b", "../x", "..", ".x", "-x", "_x", "m" * 65, "mödel", "a\x00b",
       "a+b", "a#b", "a\nb", " iris", "iris "]


@pytest.mark.parametrize("name", GOOD)
def test_names_inside_the_rule(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("index", range(len(BAD)))
def test_names_outside_the_rule_are_refused_with_it(index: int) -> None:
    with pytest.raises(ValidationError) as info:
        check_model_name(BAD[index])
    message = str(info.value)
    assert MODEL_NAME_RULE in message and "\n" not in message


def test_a_file_stem_becomes_a_lower_case_name() -> None:
    assert default_model_name("Iris_Model") == "iris_model"


def test_models_push_refuses_a_bad_name_before_converting(tmp_path: Path) -> None:
    from controller.app.cli import cli

    model = tmp_path / "model.joblib"
    model.write_bytes(b"not even a model")
    sample = tmp_path / "x.npy"
    sample.write_bytes(b"")
    result = CliRunner().invoke(cli, ["--controller", "http://127.0.0.1:9", "models", "push",
                                      str(model), "--sample", str(sample), "--name", "My Model"])
    assert result.exit_code == 2, result.output
    assert "invalid model name 'My Model'" in result.output
    assert "converting" not in result.output


@pytest.mark.parametrize("device_class", ["camera v2", "*", "-x", "a/b", "c" * 65])
def test_models_push_refuses_a_bad_device_class_before_converting(
        tmp_path: Path, device_class: str) -> None:
    from controller.app.cli import cli

    model = tmp_path / "model.joblib"
    model.write_bytes(b"not even a model")
    sample = tmp_path / "x.npy"
    sample.write_bytes(b"")
    result = CliRunner().invoke(cli, ["--controller", "http://127.0.0.1:9", "models", "push",
                                      str(model), "--sample", str(sample), "--name", "iris",
                                      "--device-class", device_class])
    assert result.exit_code == 2, result.output
    assert "is not a device class" in result.output
    assert "converting" not in result.output
