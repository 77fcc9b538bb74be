"""The sampling shares per selector, in the ``sampling_shares`` table."""

from __future__ import annotations

import sqlalchemy as sa

from controller.errors import NotFoundError
from controller.fleet.selectors import parse_selector
from controller.sampling.rules import SamplingRule, check_share
from controller.storage.db import Database
from controller.storage.tables import sampling_shares


class SamplingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, selector: str, share: float, now: float) -> SamplingRule:
        """Set (or replace) the share for a selector, stored in its canonical spelling."""
        parsed = parse_selector(selector)
        share = check_share(share)
        key = str(parsed)
        with self.db.write() as conn:
            conn.execute(sa.delete(sampling_shares).where(sampling_shares.c.selector == key))
            conn.execute(sa.insert(sampling_shares).values(selector=key, share=share,
                                                           set_at=now))
        return SamplingRule(parsed, share, now)

    def clear(self, selector: str) -> None:
        key = str(parse_selector(selector))
        with self.db.write() as conn:
            deleted = conn.execute(sa.delete(sampling_shares)
                                   .where(sampling_shares.c.selector == key)).rowcount
        if not deleted:
            raise NotFoundError("sampling share", key)

    def rules(self) -> list[SamplingRule]:
        """Every rule, oldest first."""
        t = sampling_shares.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.selector, t.share, t.set_at)
                                .order_by(t.set_at, t.selector)).all()
        return [SamplingRule(parse_selector(r.selector), r.share, r.set_at) for r in rows]
