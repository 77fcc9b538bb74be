"""Finding the converters' side environments: configuration first, then the managed cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from converters import ConversionError, envs


def test_each_environment_has_its_own_pins_and_key() -> None:
    keys = {name: env.key() for name, env in envs.ENVS.items()}
    assert len(set(keys.values())) == len(keys)
    assert "onnx2tf==1.29.24" in envs.ENVS["onnx2tf"].requirements
    assert any(r.startswith("numpy==1.") for r in envs.ENVS["tflite-runtime"].requirements)
    # The hummingbird environment unpickles our models: it gets our scikit-learn version.
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in envs.ENVS["hummingbird"].pinned()


def test_configured_python_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    monkeypatch.setenv("EDGEWISE_ONNX2TF_PYTHON", str(python))
    assert envs.find_python("onnx2tf") == python
    monkeypatch.setenv("EDGEWISE_ONNX2TF_PYTHON", str(tmp_path / "nope"))
    with pytest.raises(ConversionError, match="is not a file"):
        envs.find_python("onnx2tf")


def test_managed_environment_counts_only_when_complete(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEWISE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("EDGEWISE_TFLITE_RUNTIME_PYTHON", raising=False)
    env = envs.ENVS["tflite-runtime"]
    directory = envs.managed_dir(env)
    assert directory.parent == tmp_path / "venvs"
    (directory / "bin").mkdir(parents=True)
    (directory / "bin" / "python").write_text("")
    assert envs.find_python("tflite-runtime") is None  # a build that never finished
    with pytest.raises(ConversionError, match="python -m converters.envs setup tflite-runtime"):
        envs.require_python("tflite-runtime")
    (directory / ".complete").write_text("done")
    assert envs.find_python("tflite-runtime") == directory / "bin" / "python"


def test_unknown_environment_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown tool environment"):
        envs.find_python("coreml")
    assert envs.main(["setup", "coreml"]) == 1
    assert envs.main(["status"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in envs.ENVS)
