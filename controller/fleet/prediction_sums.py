"""Aggregates over telemetry rows that count predictions and average latencies.

A columnar ``predictions`` row (revision 0009) stands for ``n`` predictions and its
``latency_ms`` is their mean; a ``prediction`` row is one. Every view that counts predictions or
averages latencies (fleet rows, fleet health, device summaries, rollout gates) weighs rows by
``n`` through these expressions, so it gives the same figures for either form.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from controller.storage.tables import telemetry

PREDICTION_KINDS = ("prediction", "predictions")


def predictions_count() -> Any:
    """How many predictions the rows stand for."""
    t = telemetry.c
    return sa.func.coalesce(sa.func.sum(sa.case((t.kind == "prediction", 1),
                                                (t.kind == "predictions", t.n), else_=0)), 0)


def latency_sum() -> Any:
    """The sum of the predictions' latencies (a columnar row: its mean times n)."""
    t = telemetry.c
    return sa.func.sum(t.latency_ms * t.n)


def latency_count() -> Any:
    """How many predictions have a latency (the divisor of :func:`latency_sum`)."""
    t = telemetry.c
    return sa.func.coalesce(sa.func.sum(sa.case((t.latency_ms.is_not(None), t.n), else_=0)), 0)
