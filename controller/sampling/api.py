"""REST: the sampling shares per group (``/api/v1/data/sampling``), which the controller
delivers to the devices (``controller/sampling/publisher.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from controller.rest import API
from controller.sampling.rules import SamplingRule
from controller.sampling.store import SamplingStore


class SamplingIn(BaseModel):
    selector: str
    share: float


def _rule_dict(rule: SamplingRule) -> dict[str, Any]:
    return {"selector": str(rule.selector), "share": rule.share, "set_at": rule.set_at}


def sampling_router(store: SamplingStore, admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix=f"{API}/data/sampling", tags=["data"])

    @router.get("")
    def list_shares() -> list[dict[str, Any]]:
        """Every share set, oldest first (of several matching a device, the newest applies)."""
        return [_rule_dict(r) for r in store.rules()]

    @router.put("", dependencies=[Depends(admin)])
    def set_share(body: SamplingIn) -> dict[str, Any]:
        """The devices the selector picks keep ``share`` of their prediction records;
        422: a bad selector or a share outside (0, 1]."""
        return _rule_dict(store.set(body.selector, body.share, time.time()))

    @router.delete("", dependencies=[Depends(admin)])
    def clear_share(selector: str) -> dict[str, Any]:
        """The selector's devices go back to their own rate; 404: no share set for it."""
        store.clear(selector)
        return {"selector": selector, "cleared": True}

    return router
