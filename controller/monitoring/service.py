"""The controller's monitoring loop: judge metrics windows, keep alert states, run the hook.

Every ``alert_interval_s`` :meth:`MonitoringService.evaluate_now` runs one evaluation
(:meth:`controller.monitoring.alert_store.AlertStore.evaluate`, in a worker thread). Alerts that fired, of
a kind named in ``retrain_on``, start the continuous-training hook (:mod:`controller.monitoring.retrain_hook`)
once per (kind, model) and ``retrain_cooldown_s``, with every device for which that alert is
firing in the context. A model the hook hands back is converted (scikit-learn -> ONNX with the
parity check), registered as the next version and, with ``retrain_canary``, deployed to one of
the alerting devices.

Canary: with ``retrain_rollout_selector`` set, a gated rollout of the new version over that
selector, waves ``retrain_rollout_waves`` (the first wave is the canary). Without a selector, a
plain deployment of the new version to one alerting device; promoting it is then the operator's
decision. The default is the latter because an empty selector matches every device, including
those running other models.

The service is given what it uses, as callables (who holds the lease, register a model, start a
rollout, deploy, list devices), not the controller: it does not import the features that
provide them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.config import ControllerConfig
from controller.errors import ValidationError
from controller.monitoring import ALERT_KINDS, FIRED, AlertEvent, AlertRules
from controller.monitoring.alert_store import AlertStore, DetectionSettings
from controller.monitoring.notifier import AlertNotifier
from controller.monitoring.retrain_hook import (
    HookResult,
    ProducedModel,
    build_context,
    post_webhook,
    run_command,
)
from controller.monitoring.retrain_runs import RetrainRuns
from controller.monitoring.sequential_alerts import is_group
from controller.monitoring.watch import WatchSettings
from edgewise_wire import Manifest

log = logging.getLogger("edgewise.controller.monitoring")


def rules_from_config(config: ControllerConfig) -> AlertRules:
    try:
        return AlertRules(
            fire_after=config.alert_fire_after, clear_after=config.alert_clear_after,
            latency_p95_ms=config.alert_latency_p95_ms,
            silent_after_s=config.alert_silent_after_s)
    except ValueError as exc:
        raise ValidationError(f"alert settings: {exc}") from None


def detection_from_config(config: ControllerConfig) -> DetectionSettings:
    """The sequential tests' settings (``detectors``, by their flat names) and how they run."""
    try:
        watch = WatchSettings.from_flat(config.detectors)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"detectors: {exc}; the names and defaults are listed in "
                              "docs/monitoring.md") from None
    if not 0 < config.alert_segment_alpha < 1:
        raise ValidationError("alert_segment_alpha must lie in (0, 1)")
    if config.alert_segment_min_labels < 1 or config.alert_segment_period_s <= 0:
        raise ValidationError("alert_segment_min_labels must be >= 1 and alert_segment_period_s "
                              "> 0")
    return DetectionSettings(watch=watch, group_by=config.alert_group_by,
                             segment_label=config.alert_segment_label,
                             segment_alpha=config.alert_segment_alpha,
                             segment_min_labels=config.alert_segment_min_labels,
                             segment_period_s=config.alert_segment_period_s)


def retrain_kinds(config: ControllerConfig) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in config.retrain_on.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(ALERT_KINDS))
    if unknown:
        raise ValidationError(f"retrain_on names unknown alert kinds {unknown}; "
                              f"known: {list(ALERT_KINDS)}")
    if kinds and not (config.retrain_command or config.retrain_webhook):
        raise ValidationError("retrain_on is set but neither retrain_command nor "
                              "retrain_webhook is: say what to run when those alerts fire")
    return kinds


@dataclass(frozen=True)
class MonitoringSettings:
    """The controller settings the monitoring loop and the retraining hook read."""

    rules: AlertRules
    retrain_on: tuple[str, ...]
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    alert_interval_s: float = 10.0
    retrain_command: str | None = None
    retrain_webhook: str | None = None
    retrain_timeout_s: float = 900.0
    retrain_cooldown_s: float = 3600.0
    retrain_canary: bool = False
    retrain_rollout_selector: str | None = None
    retrain_rollout_waves: str = "1,10%,50%,100%"
    data_dir: Path = Path("edgewise-data")
    controller_url: str = "http://127.0.0.1:8700"

    @classmethod
    def from_config(cls, config: ControllerConfig) -> MonitoringSettings:
        return cls(rules=rules_from_config(config), retrain_on=retrain_kinds(config),
                   detection=detection_from_config(config),
                   alert_interval_s=config.alert_interval_s,
                   retrain_command=config.retrain_command,
                   retrain_webhook=config.retrain_webhook,
                   retrain_timeout_s=config.retrain_timeout_s,
                   retrain_cooldown_s=config.retrain_cooldown_s,
                   retrain_canary=config.retrain_canary,
                   retrain_rollout_selector=config.retrain_rollout_selector,
                   retrain_rollout_waves=config.retrain_rollout_waves,
                   data_dir=config.data_dir,
                   controller_url=f"http://{config.http_host}:{config.http_port}")


RegisterModel = Callable[[Manifest, bytes], Manifest]
ManifestOf = Callable[[str, int | None], Manifest]
# (model, output file, since): writes the model's predictions as Parquet, returns the rows
ExportData = Callable[[str, Path, float | None], int]
TRAINING_DATA_NAME = "training_data.parquet"
TRAINING_DATA_DAYS = 30.0  # what the hook gets: the fleet's predictions of the last 30 days
StartRollout = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]
Deploy = Callable[[str, int | None, list[str] | None], Awaitable[dict[str, Any]]]


class MonitoringService:
    def __init__(self, alerts: AlertStore, runs: RetrainRuns, settings: MonitoringSettings, *,
                 is_leader: Callable[[], bool], register: RegisterModel, manifest_of: ManifestOf,
                 start_rollout: StartRollout | None, deploy: Deploy,
                 device_ids: Callable[[], list[str]],
                 export_data: ExportData | None = None,
                 notifier: AlertNotifier | None = None) -> None:
        self.alerts = alerts
        self._export_data = export_data
        self.notifier = notifier
        self.runs = runs
        self.config = settings
        self.rules = settings.rules
        self.kinds = settings.retrain_on
        self._is_leader = is_leader
        self._register_model = register
        self._manifest_of = manifest_of
        self._start_rollout = start_rollout
        self._deploy = deploy
        self._device_ids = device_ids
        self.stats: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._hooks: set[asyncio.Task[None]] = set()
        self._running: set[tuple[str, str]] = set()  # (kind, model) with a run under way
        self._evaluating = asyncio.Lock()

    def settings(self) -> dict[str, Any]:
        """Every alert setting in force, as `edgewise alerts --explain` shows them."""
        rules, detection = self.config.rules, self.config.detection
        return {"window_rules": {"fire_after": rules.fire_after, "clear_after": rules.clear_after,
                                 "latency_p95_ms": rules.latency_p95_ms,
                                 "latency_min_predictions": rules.latency_min_predictions,
                                 "silent_after_s": rules.silent_after_s},
                "detectors": detection.watch.flat(),
                "group_by": detection.group_by,
                "segments": {"label": detection.segment_label, "alpha": detection.segment_alpha,
                             "min_labels": detection.segment_min_labels,
                             "period_s": detection.segment_period_s}}

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())
        if self.notifier is not None:
            self.notifier.start()

    async def stop(self) -> None:
        if self.notifier is not None:
            await self.notifier.stop()
        tasks = [t for t in (self._task, *self._hooks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.alert_interval_s)
            if not self._is_leader():  # another replica judges
                self.stats["skipped_not_leader"] += 1
                continue
            try:
                await self.evaluate_now()
            except Exception:
                # the database may be down: the windows stay unevaluated and are judged later
                self.stats["evaluation_failures"] += 1
                log.exception("alert evaluation failed; retrying in %.0f s",
                              self.config.alert_interval_s)

    async def evaluate_now(self) -> list[AlertEvent]:
        """One evaluation pass; starts the hook for fired alerts of the configured kinds."""
        async with self._evaluating:
            events = await asyncio.to_thread(self.alerts.evaluate, time.time(), self.rules,
                                             self.config.detection)
        self.stats["evaluations"] += 1
        if self.notifier is not None:
            self.notifier.wake(events)  # records them; never waits for a receiver
        for event in events:
            self.stats[f"{event.event}_{event.kind.value}"] += 1
            log.warning("alert %s %s on %s (%s:%s): %s", event.kind.value, event.event,
                        event.device_id, event.model, event.version, event.detail)
        if self.kinds:
            await self._start_hooks([e for e in events if e.event == FIRED
                                     and e.kind.value in self.kinds and e.model is not None])
        return events

    async def _start_hooks(self, fired: list[AlertEvent]) -> None:
        groups: dict[tuple[str, str, int | None], list[AlertEvent]] = defaultdict(list)
        for event in fired:
            assert event.model is not None
            groups[(event.kind.value, event.model, event.version)].append(event)
        for (kind, model, version), events in groups.items():
            if (kind, model) in self._running:
                self.stats["retrain_already_running"] += 1
                continue
            last = await asyncio.to_thread(self.runs.last_started, kind, model)
            if last is not None and time.time() - last < self.config.retrain_cooldown_s:
                self.stats["retrain_cooled_down"] += 1
                log.info("retraining for %s on %s skipped: last run %.0f s ago (cool-down %.0f s)",
                         kind, model, time.time() - last, self.config.retrain_cooldown_s)
                continue
            self._running.add((kind, model))
            task = asyncio.create_task(self._retrain(kind, model, version, events))
            self._hooks.add(task)
            task.add_done_callback(self._hooks.discard)
            task.add_done_callback(functools.partial(self._run_done, (kind, model)))

    def _run_done(self, key: tuple[str, str], _task: asyncio.Task[None]) -> None:
        self._running.discard(key)

    async def _retrain(self, kind: str, model: str, version: int | None,
                       events: list[AlertEvent]) -> None:
        try:
            firing = await asyncio.to_thread(self.alerts.alerts, kind=kind)
        except Exception:
            firing = []  # the events alone name the devices then
        devices = _alerting_devices(model, firing, events)
        actions = [a for a, on in (("command", self.config.retrain_command),
                                   ("webhook", self.config.retrain_webhook)) if on]
        try:
            run_id = await asyncio.to_thread(self.runs.start, kind, model, version,
                                             "+".join(actions), {})
        except Exception:
            # the database refused: the next alert of this kind tries again (no cool-down
            # was recorded)
            self.stats["retrain_failed"] += 1
            log.exception("retraining for %s on %s:%s could not be recorded; not started",
                          kind, model, version)
            return
        output_dir = self.config.data_dir / "retrain" / f"run-{run_id}"
        url = self.config.controller_url
        context = build_context(run_id=run_id, kind=kind, model=model, version=version,
                                devices=devices, alerts=[e.to_dict() for e in events],
                                fired_at=min(e.ts for e in events), output_dir=output_dir,
                                controller_url=url)
        context["training_data"] = await self._training_data(model, output_dir)
        log.warning("retraining run %d for %s alerts on %s:%s (%d devices): %s", run_id, kind,
                    model, version, len(devices), " + ".join(actions))
        status, details, new_version = "no_model", [], None
        try:
            if self.config.retrain_webhook:
                hook = await asyncio.to_thread(post_webhook, self.config.retrain_webhook,
                                               context, 30.0)
                details.append(hook.detail)
                if hook.status == "failed":
                    status = "failed"
            if self.config.retrain_command:
                result: HookResult = await run_command(
                    self.config.retrain_command, context, output_dir,
                    self.config.retrain_timeout_s)
                details.append(result.detail)
                if result.status == "failed":
                    status = "failed"
                elif result.produced is not None:
                    new_version = await self._register(model, version, result.produced)
                    status = "ok"
                    details.append(f"registered {model}:{new_version}")
                    if self.config.retrain_canary:
                        details.append(await self._canary(model, new_version, devices, run_id))
        except asyncio.CancelledError:
            details.append("cancelled: the controller stopped")
            status = "failed"
            raise
        except Exception as exc:
            log.exception("retraining run %d failed", run_id)
            status = "failed"
            details.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.stats[f"retrain_{status}"] += 1
            detail = "; ".join(details)
            log.warning("retraining run %d: %s: %s", run_id, status, detail)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.runs.finish, run_id, status, detail,
                                        new_version, context)

    async def _training_data(self, model: str, output_dir: Path) -> str | None:
        """What the fleet saw of ``model`` over the last :data:`TRAINING_DATA_DAYS` days, as
        ``training_data.parquet`` in the run's directory (`edgewise data export`); its path,
        or None when there is nothing (or the export failed: the hook runs all the same)."""
        if self._export_data is None:
            return None
        out = output_dir / TRAINING_DATA_NAME
        since = time.time() - TRAINING_DATA_DAYS * 86_400.0
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            rows = await asyncio.to_thread(self._export_data, model, out, since)
        except Exception:
            log.exception("exporting the training data of %s failed", model)
            return None
        return str(out) if rows else None

    async def _register(self, model: str, version: int | None, produced: ProducedModel) -> int:
        """Convert the produced scikit-learn model (parity-checked) and register it."""
        def convert_and_register() -> int:
            from converters import (
                convert_sklearn,
                load_labels_file,
                load_model_file,
                load_sample_file,
            )

            estimator = load_model_file(produced.model_file)
            sample = load_sample_file(produced.sample_file)
            labels = load_labels_file(produced.labels_file) if produced.labels_file else None
            names = _previous_feature_names(self._manifest_of, model, version, sample.shape[1])
            result = convert_sklearn(estimator, sample, name=model, labels=labels,
                                     feature_names=names)
            return self._register_model(result.manifest, result.artifact).version

        return await asyncio.to_thread(convert_and_register)

    async def _canary(self, model: str, version: int, devices: list[str], run_id: int) -> str:
        """A gated rollout when a selector is configured and the rollout engine is there; else
        a deploy of the new version to one alerting device."""
        selector = self.config.retrain_rollout_selector
        if selector is not None and self._start_rollout is not None:
            spec = {"model": model, "version": version, "selector": selector,
                    "waves": self.config.retrain_rollout_waves, "name": f"retrain-run-{run_id}"}
            view = await self._start_rollout(spec, "retrain-hook")
            return (f"canary: rollout {view.get('id', '?')} of {model}:{version} started "
                    f"(waves {self.config.retrain_rollout_waves}, selector {selector!r})")
        known = set(await asyncio.to_thread(self._device_ids))
        candidates = [d for d in devices if d in known]
        if not candidates:
            return "canary: no alerting device is registered; nothing deployed"
        deployment = await self._deploy(model, version, candidates[:1])
        return (f"canary: {model}:{version} deployed to {candidates[0]} "
                f"({deployment['deployment_id']}); promote it with a rollout")


def _previous_feature_names(manifest_of: ManifestOf, model: str, version: int | None,
                            n_features: int) -> list[str] | None:
    """Keep the feature names of the version being replaced when the shapes agree."""
    try:
        manifest = manifest_of(model, version)
    except Exception:
        return None
    names = list(manifest.feature_names)
    return names if len(names) == n_features else None


def _alerting_devices(model: str, firing: list[dict[str, Any]],
                      events: list[AlertEvent]) -> list[str]:
    """The devices the retraining run is about: those whose own alert of the kind fires for
    ``model``. A group's alert (its pooled test) names the group, not the devices that moved it;
    its devices stand in only when no device's own alert fires, since a group of many devices
    can alarm on a change no single one of them has proven yet."""
    own = {a["device_id"] for a in firing if a["model"] == model and not is_group(a["device_id"])}
    own |= {e.device_id for e in events if not is_group(e.device_id)}
    if own:
        return sorted(own)
    return sorted({d for e in events for d in e.context.get("devices", ())})
