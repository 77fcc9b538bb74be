"""The alert settings a controller configuration takes: the detectors' own by their flat names,
the group and segment settings, and the replaced per-window settings refused with what to set."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import REPLACED_SETTINGS, ControllerConfig, load_controller_config
from controller.errors import ValidationError
from controller.monitoring.service import MonitoringSettings, detection_from_config


def test_detector_settings_come_from_the_detectors_table(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('alert_group_by = "hw"\n[detectors]\ndrift_alpha = 1e-9\n'
                    'accuracy_tolerance = 0.02\n')
    config = load_controller_config(path, data_dir=tmp_path)
    detection = detection_from_config(config)
    assert detection.group_by == "hw"
    assert detection.watch.drift.alpha == 1e-9 and detection.watch.error_rate.tolerance == 0.02
    assert MonitoringSettings.from_config(config).detection == detection


def test_an_unknown_detector_setting_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="drift_alfa"):
        detection_from_config(ControllerConfig(detectors={"drift_alfa": 1e-7}))


@pytest.mark.parametrize("old", sorted(REPLACED_SETTINGS))
def test_a_replaced_setting_is_refused_with_what_to_set_instead(tmp_path: Path, old: str) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(f"{old} = 0.1\n")
    with pytest.raises(ValidationError, match=old) as refused:
        load_controller_config(path)
    assert "instead" in str(refused.value) or "no absolute floor" in str(refused.value) \
        or "needs no minimum" in str(refused.value)


def test_impossible_segment_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="alert_segment_alpha"):
        detection_from_config(ControllerConfig(alert_segment_alpha=1.5))
