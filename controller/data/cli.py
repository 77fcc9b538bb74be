"""`edgewise data export`, `edgewise data retention` and `edgewise data sampling`: the fleet's
predictions as a training set, how long telemetry is kept, and the share of prediction records
each group of devices keeps. Both are REST calls (``controller/data/api.py``); the
export is streamed into the file as the controller reads it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from controller.cli.client import ControllerClientError
from controller.cli.common import client_from, emit, fail, json_option, parse_since
from controller.cli.exit_codes import ExitCode


def _model_ref(text: str) -> tuple[str, int | None]:
    name, _, version = text.partition(":")
    if not name:
        raise click.BadParameter(f"{text!r}: write MODEL or MODEL:VERSION", param_hint="MODEL")
    if not version:
        return name, None
    try:
        return name, int(version)
    except ValueError:
        raise click.BadParameter(f"{text!r}: the version must be a number",
                                 param_hint="MODEL") from None


@click.group("data")
def data() -> None:
    """The collected data: export predictions as a training set, apply a retention policy."""


@data.command("export")
@click.argument("model")
@click.option("--since", help="Only predictions newer than this: a span back from now "
              "(30m, 6h, 7d) or a Unix time. Default: all.")
@click.option("--selector", help="Only devices whose labels match, e.g. 'site=berlin'.")
@click.option("--labelled-only", is_flag=True,
              help="Only predictions whose true label came back as feedback.")
@click.option("--sample", type=click.FloatRange(0, 1, min_open=True),
              help="Keep this share of the predictions (0.1: one in ten), per group with "
              "--sample-by; the file gains a sample_share column (a row stands for "
              "1/share predictions).")
@click.option("--sample-by", metavar="LABEL",
              help="The device label whose values are the sampling groups, e.g. 'group': "
              "each group keeps its own share.")
@click.option("--sample-share", "sample_shares", multiple=True, metavar="GROUP=SHARE",
              help="A group's own share (repeatable), e.g. canary=1.0; the other groups "
              "keep --sample (default 1).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The sample's seed: the same seed gives the same rows.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet",
              show_default=True, help="File format (Parquet: pandas, polars, DuckDB read it).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write (replaced only once the export is complete).")
@json_option
@click.pass_context
def export(ctx: click.Context, model: str, since: str | None, selector: str | None,
           labelled_only: bool, sample: float | None, sample_by: str | None,
           sample_shares: tuple[str, ...], seed: int, fmt: str, out: Path,
           as_json: bool) -> None:
    """Write MODEL[:VERSION]'s predictions as a training set: one row per prediction with the
    device, its labels, version, times, prediction, probability, the true label when known and
    the inputs (one column per feature of the manifest; recorded by agents with
    telemetry_columnar, the default).

    Example: edgewise data export iris:3 --since 7d --labelled-only --out iris.parquet

    Example: edgewise data export iris --sample 0.1 --sample-by group --sample-share canary=1
    --out iris-sample.parquet
    """
    name, version = _model_ref(model)
    since_ts = parse_since(since)
    params: dict[str, object] = {"model": name, "format": fmt,
                                 "labelled_only": str(labelled_only).lower()}
    if version is not None:
        params["version"] = version
    if since_ts is not None:
        params["since"] = since_ts
    if selector:
        params["selector"] = selector
    if sample is not None:
        params["sample"] = sample
    if sample_by:
        params["sample_by"] = sample_by
    if sample_shares:
        params["sample_share"] = list(sample_shares)
    if sample is not None or sample_shares:
        params["seed"] = seed
    part = out.with_name(f".{out.name}.part-{os.getpid()}")
    try:
        handle = part.open("wb")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    client = client_from(ctx, timeout=300.0)
    try:
        with handle:
            written = client.export_data(params, handle)
        part.replace(out)
    except ControllerClientError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    emit({"path": str(out), "bytes": written, "format": fmt, "model": name,
          "version": version}, as_json,
         lambda d: f"wrote {d['path']} ({d['bytes']:,} bytes, {d['format']})")


@data.command("retention")
@click.option("--days", type=click.FloatRange(0), help="Delete telemetry older than this many "
              "days (by the device's time).")
@click.option("--rows", type=click.IntRange(0), help="Then keep at most this many telemetry "
              "rows, the newest (rows sharing the cutoff time are kept).")
@json_option
@click.pass_context
def retention(ctx: click.Context, days: float | None, rows: int | None, as_json: bool) -> None:
    """Delete old telemetry now and say exactly how many rows went (metrics and health
    windows, which the fleet views read, are kept).

    Example: edgewise data retention --days 30 --rows 50000000
    """
    if days is None and rows is None:
        fail("say how much to keep: --days, --rows or both", ExitCode.USAGE)
    try:
        result = client_from(ctx).apply_retention(days, rows)
    except ControllerClientError as exc:
        fail(str(exc))
    emit(result, as_json, lambda d: (f"deleted {d['deleted']:,} telemetry rows "
                                     f"({d['deleted_by_age']:,} by age, {d['deleted_by_rows']:,}"
                                     f" by count); {d['kept']:,} kept"))


@data.group("sampling")
def sampling() -> None:
    """The share of prediction records each group of devices keeps, set here and delivered to
    the devices (over their own prediction_sample_rate). Exports scale counts by it."""


@sampling.command("set")
@click.option("--selector", required=True, help="The group: a label selector, e.g. "
              "'group=berlin' ('' for every device).")
@click.option("--share", required=True, type=click.FloatRange(0, 1, min_open=True),
              help="The share of predictions whose records the devices keep (0.1: one in ten).")
@json_option
@click.pass_context
def sampling_set(ctx: click.Context, selector: str, share: float, as_json: bool) -> None:
    """Set a group's share; where several groups match a device, the one set last applies.

    Example: edgewise data sampling set --selector group=berlin --share 0.1
    """
    try:
        rule = client_from(ctx).set_sampling_share(selector, share)
    except ControllerClientError as exc:
        fail(str(exc))
    emit(rule, as_json, lambda d: f"devices matching {d['selector'] or '(all)'!s} keep "
                                  f"{d['share']:g} of their prediction records")


@sampling.command("list")
@json_option
@click.pass_context
def sampling_list(ctx: click.Context, as_json: bool) -> None:
    """The shares set, oldest first.

    Example: edgewise data sampling list
    """
    try:
        rules = client_from(ctx).sampling_shares()
    except ControllerClientError as exc:
        fail(str(exc))
    emit(rules, as_json, lambda rs: "\n".join(
        f"{r['selector'] or '(all)'}\t{r['share']:g}" for r in rs) or "no sampling shares set")


@sampling.command("clear")
@click.option("--selector", required=True, help="The group whose share to remove.")
@json_option
@click.pass_context
def sampling_clear(ctx: click.Context, selector: str, as_json: bool) -> None:
    """Remove a group's share: its devices go back to their own prediction_sample_rate.

    Example: edgewise data sampling clear --selector group=berlin
    """
    try:
        result = client_from(ctx).clear_sampling_share(selector)
    except ControllerClientError as exc:
        fail(str(exc))
    emit(result, as_json, lambda d: f"cleared the sampling share of {d['selector'] or '(all)'}")


COMMANDS = [data]
