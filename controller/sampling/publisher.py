"""Delivers the sampling shares: each device gets a retained ``sampling`` order with the share
its group keeps, re-published only when that changes (a rule set or cleared, a device that
appeared or whose labels changed)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from controller.sampling.rules import share_for
from controller.sampling.store import SamplingStore
from edgewise_wire import SamplingOrder

log = logging.getLogger("edgewise.controller.sampling")


class SamplingPublisher:
    def __init__(self, store: SamplingStore,
                 device_labels: Callable[[], Mapping[str, Mapping[str, str]]],
                 publish: Callable[[str, SamplingOrder], None]) -> None:
        self.store = store
        self.device_labels = device_labels
        self.publish = publish
        # what each device was last sent by this process (after a restart every device is
        # sent its order once again: the retained copy may be another controller's)
        self._sent: dict[str, SamplingOrder] = {}

    def forget(self) -> None:
        """Send every order again at the next reconcile (e.g. after the lease came back)."""
        self._sent.clear()

    def changes(self) -> list[tuple[str, SamplingOrder]]:
        """The orders that differ from what each device was last sent (reads the database:
        may run in a worker thread)."""
        rules = self.store.rules()
        out = []
        # devices share few distinct label sets: each is matched against the rules once
        orders: dict[frozenset[tuple[str, str]], SamplingOrder] = {}
        for device_id, labels in self.device_labels().items():
            key = frozenset(labels.items())
            order = orders.get(key)
            if order is None:
                rule = share_for(labels, rules)
                order = orders[key] = SamplingOrder(rule.share, str(rule.selector)) \
                    if rule is not None else SamplingOrder(None)
            if self._sent.get(device_id) != order:
                out.append((device_id, order))
        return out

    def send(self, changes: list[tuple[str, SamplingOrder]]) -> None:
        """Publish the changed orders (on the MQTT link's loop)."""
        for device_id, order in changes:
            self.publish(device_id, order)
            self._sent[device_id] = order
        if changes:
            log.info("sampling orders published to %d devices", len(changes))
