"""Bounded FIFOs of wavelets, one per (lane, core), vectorized over the fabric with `xp`.

A wavelet is 32 bits on the link (Hot Chips 2020; `Target.link_bits`): here its fields are kept
apart so the model can read them, `Wavelets`: the colour it travels on, how many values it
carries `n` (0 for a control wavelet, 1 for a sparse (value, index) wavelet, up to
`Target.dense_values_per_wavelet` for a dense one), the index of its first value `idx` and the
values `v` (a trailing axis of `dense_values_per_wavelet`).

Each queue is a ring buffer of `depth` slots, the queues stored flat (queue, slot). A read
gathers every queue's head slot and a write scatters into every queue's tail slot by advanced
indexing (one index per queue, so no two writes meet), so one call moves a wavelet in or out of
every queue of the fabric at once, with no Python loop over cores, on NumPy and CuPy alike.
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Wavelets(NamedTuple):
    """One wavelet per lane and core (arrays shaped alike; `v` has one more, trailing axis)."""
    colour: Any
    n: Any
    idx: Any
    v: Any

    def where(self, xp, mask, other: Wavelets) -> Wavelets:
        """These wavelets where `mask`, `other` elsewhere."""
        return Wavelets(xp.where(mask, self.colour, other.colour), xp.where(mask, self.n, other.n),
                        xp.where(mask, self.idx, other.idx),
                        xp.where(mask[..., None], self.v, other.v))


def empty(xp, shape: tuple, values: int) -> Wavelets:
    """No wavelet: zero in every field."""
    return Wavelets(xp.zeros(shape, dtype=xp.int16), xp.zeros(shape, dtype=xp.int8),
                    xp.zeros(shape, dtype=xp.int32), xp.zeros(shape + (values,), dtype=xp.float32))


class Queues:
    """FIFOs of `depth` wavelets for every lane and core of `shape` (e.g. (ports, rows, cols))."""

    def __init__(self, xp, shape: tuple, depth: int, values: int):
        if depth < 1:
            raise ValueError(f"a queue must hold at least one wavelet, got depth {depth}")
        self.xp, self.shape, self.depth = xp, tuple(shape), depth
        size = 1
        for n in self.shape:
            size *= n
        self.slots = empty(xp, (size, depth), values)
        self.head = xp.zeros(self.shape, dtype=xp.int32)
        self.count = xp.zeros(self.shape, dtype=xp.int32)
        self._queue = xp.arange(size)

    def space(self):
        """Where a queue can take one more wavelet (back-pressure: a full queue takes none)."""
        return self.count < self.depth

    def peek(self) -> Wavelets:
        """The wavelet at the head of every queue (the last one it held where it is empty)."""
        at = (self._queue, self.head.reshape(-1))
        s, shape = self.slots, self.shape
        return Wavelets(s.colour[at].reshape(shape), s.n[at].reshape(shape),
                        s.idx[at].reshape(shape), s.v[at].reshape(shape + s.v.shape[-1:]))

    def pop(self, mask) -> None:
        """Drop the head wavelet of the queues where `mask` (each must hold one)."""
        xp = self.xp
        self.head = xp.where(mask, (self.head + 1) % self.depth, self.head)
        self.count = self.count - mask

    def push(self, mask, w: Wavelets) -> None:
        """Append `w` (broadcast to the queues) to the queues where `mask` (each must have
        `space`)."""
        xp = self.xp
        at = (self._queue, ((self.head + self.count) % self.depth).reshape(-1))
        flat = xp.broadcast_to(mask, self.shape).reshape(-1)
        for field, new in zip(self.slots, w):
            new = xp.broadcast_to(new, self.shape + field.shape[2:]).reshape((-1,) + field.shape[2:])
            keep = flat.reshape((-1,) + (1,) * (field.ndim - 2))
            field[at] = xp.where(keep, new, field[at])
        self.count = self.count + mask
