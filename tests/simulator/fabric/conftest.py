"""Fixtures of the fabric tests. `relay`: a test program: a stream per row multicast along it to every PE and on over the east edge;
each PE's task adds the values it receives, taking `cost` cycles a wavelet (a number, or
per column)."""
from __future__ import annotations

import numpy as np
import pytest

from simulator.fabric.pe import Work
from simulator.fabric.queues import Wavelets
from simulator.fabric.router import RAMP, E, W, route_mask


class Relay:
    colours, priority, reduction = 1, (0,), ()

    def __init__(self, values: np.ndarray, cols: int, cost: int = 1, route=None):
        rows, length = values.shape
        self.region, self.cost, self.values = (rows, cols), cost, values
        self.routes = np.zeros((1, 5, rows, cols), dtype=np.uint8)
        self.routes[0, W] = route_mask(RAMP, E) if route is None else route
        w = Wavelets(np.zeros((rows, length), np.int16), np.ones((rows, length), np.int8),
                     np.tile(np.arange(length, dtype=np.int32), (rows, 1)),
                     np.stack([values, np.zeros_like(values)], axis=-1).astype(np.float32))
        self.streams = {"W": (w, np.full(rows, length))}
        self.sinks = {"E": np.full(rows, length)}
        self.bound = 4 * (int(np.max(cost)) + 1) * length + 4 * (rows + cols) + 64

    def start(self, xp, datapath):
        self.xp = xp
        self.total = xp.zeros(self.region, dtype=xp.float32)
        self.received = xp.zeros(self.region, dtype=xp.int64)

    def ready(self, colour, heads):
        return self.xp.ones(self.region, dtype=bool)

    def run(self, colour, heads, mask):
        xp = self.xp
        self.total += xp.where(mask, heads.v[0, ..., 0], 0)
        self.received += mask
        zero = xp.zeros(self.region, dtype=xp.int64)
        cost = xp.broadcast_to(xp.asarray(self.cost), self.region[1:])
        return Work(xp.where(mask, cost, zero), zero, zero)

    def emit(self):
        xp = self.xp
        return xp.zeros(self.region, dtype=bool), Wavelets(
            xp.zeros(self.region, xp.int16), xp.zeros(self.region, xp.int8),
            xp.zeros(self.region, xp.int32), xp.zeros(self.region + (2,), xp.float32))

    def emitted(self, mask):
        pass

    def complete(self, colour, mask):
        pass

    def finished(self):
        return (self.received >= self.values.shape[1]).all()


@pytest.fixture
def relay():
    return Relay
