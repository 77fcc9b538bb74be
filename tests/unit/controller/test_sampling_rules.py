"""Which sampling share applies to a device: the newest rule whose selector matches."""

from __future__ import annotations

import pytest

from controller.errors import ValidationError
from controller.sampling.rules import parse_rule, share_for


def test_the_newest_matching_rule_applies_and_none_without_one() -> None:
    rules = [parse_rule("", 0.5, 1.0), parse_rule("group=berlin", 0.1, 2.0),
             parse_rule("group in (munich,hamburg)", 0.2, 3.0)]
    berlin = share_for({"group": "berlin"}, rules)
    assert berlin is not None and (berlin.share, str(berlin.selector)) == (0.1, "group=berlin")
    munich = share_for({"group": "munich"}, rules)
    assert munich is not None and munich.share == 0.2
    other = share_for({"group": "paris"}, rules)
    assert other is not None and other.share == 0.5  # the fleet-wide rule
    assert share_for({"group": "paris"}, rules[1:]) is None
    # a wider rule set after a narrower one wins where both match
    assert share_for({"group": "berlin"}, [*rules, parse_rule("", 0.9, 4.0)]).share == 0.9  # type: ignore[union-attr]


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5, float("nan"), True])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValidationError, match="share must be within"):
        parse_rule("group=berlin", share, 1.0)
