"""Which sampling share applies to a device: pure logic over the rules and its labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.errors import ValidationError
from controller.fleet.selectors import Selector, parse_selector


@dataclass(frozen=True)
class SamplingRule:
    """The devices a selector picks keep ``share`` of their prediction records."""

    selector: Selector
    share: float
    set_at: float


def check_share(share: float) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share <= 1.0:
        raise ValidationError(f"share must be within (0, 1] (1: keep every record), got {share!r}")
    return float(share)


def parse_rule(selector: str, share: float, set_at: float) -> SamplingRule:
    return SamplingRule(parse_selector(selector), check_share(share), set_at)


def share_for(labels: Mapping[str, str], rules: Sequence[SamplingRule]) -> SamplingRule | None:
    """The rule for a device with these labels: of those whose selector matches, the one set
    last (so a narrower group set after a wider one overrides it); None: no rule, the device's
    own ``prediction_sample_rate`` applies."""
    best: SamplingRule | None = None
    for rule in rules:
        if rule.selector.matches(labels) and (best is None or rule.set_at >= best.set_at):
            best = rule
    return best
