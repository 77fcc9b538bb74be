"""Ports for the test brokers: free, never handed out twice, and outside the ephemeral range that
outgoing connections take their local ports from (where one could steal a broker's port while
a test has the broker stopped for a restart)."""

from __future__ import annotations

import random
import socket

import pytest

from simulator import broker
from simulator.broker import free_port


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    ceiling = broker._ephemeral_range_start()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(broker._PORT_FLOOR <= p < ceiling for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = int(held.getsockname()[1])
        # the first two picks land on the held port, later ones anywhere
        rng = random.Random(1)
        picks = iter([taken, taken])
        monkeypatch.setattr(broker, "_ephemeral_range_start", lambda: 65536)
        monkeypatch.setattr(broker, "_PORT_FLOOR", 1024)
        monkeypatch.setattr(broker._port_random, "randrange",
                            lambda lo, hi: next(picks, None) or rng.randrange(lo, hi))
        monkeypatch.setattr(broker, "_ports_handed_out", set())
        assert free_port() != taken


def test_seeding_the_global_random_does_not_steer_the_ports() -> None:
    random.seed(7)
    first = [free_port() for _ in range(5)]
    random.seed(7)
    second = [free_port() for _ in range(5)]
    assert set(first).isdisjoint(second)
