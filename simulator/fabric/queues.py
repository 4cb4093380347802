"""Bounded FIFOs of wavelets, one per (lane, core), vectorized over the fabric with `xp`.

A wavelet is 32 bits on the link (Hot Chips 2020; `Target.link_bits`): here its fields are kept
apart so the model can read them, `Wavelets`: the colour it travels on, how many values it
carries `n` (0 for a control wavelet, 1 for a sparse (value, index) wavelet, up to
`Target.dense_values_per_wavelet` for a dense one), the index of its first value `idx` and the
values `v` (a trailing axis of `dense_values_per_wavelet`).

Each queue is a ring buffer over the last axis, `depth` deep. Every read and write is a `where`
over that axis (a one-hot of the slot), so one call moves a wavelet in or out of every queue of
the fabric at once, with no Python loop over cores, on NumPy and CuPy alike.
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Wavelets(NamedTuple):
    """One wavelet per lane and core (arrays shaped alike; `v` has one more, trailing axis)."""
    colour: Any
    n: Any
    idx: Any
    v: Any

    def where(self, xp, mask, other: "Wavelets") -> "Wavelets":
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
        self.slots = empty(xp, self.shape + (depth,), values)
        self.head = xp.zeros(self.shape, dtype=xp.int32)
        self.count = xp.zeros(self.shape, dtype=xp.int32)
        self._slot = xp.arange(depth, dtype=xp.int32)

    def space(self):
        """Where a queue can take one more wavelet (back-pressure: a full queue takes none)."""
        return self.count < self.depth

    def peek(self) -> Wavelets:
        """The wavelet at the head of every queue (zeros where a queue is empty)."""
        xp, hot = self.xp, self._slot == self.head[..., None]
        s = self.slots
        return Wavelets(xp.where(hot, s.colour, 0).sum(axis=-1, dtype=xp.int16),
                        xp.where(hot, s.n, 0).sum(axis=-1, dtype=xp.int8),
                        xp.where(hot, s.idx, 0).sum(axis=-1, dtype=xp.int32),
                        xp.where(hot[..., None], s.v, 0).sum(axis=-2, dtype=xp.float32))

    def pop(self, mask) -> None:
        """Drop the head wavelet of the queues where `mask` (each must hold one)."""
        xp = self.xp
        self.head = xp.where(mask, (self.head + 1) % self.depth, self.head)
        self.count = self.count - mask

    def push(self, mask, w: Wavelets) -> None:
        """Append `w` to the queues where `mask` (each must have `space`)."""
        xp = self.xp
        tail = (self.head + self.count) % self.depth
        hot = mask[..., None] & (self._slot == tail[..., None])
        expand = lambda a: a[..., None]  # noqa: E731
        self.slots = Wavelets(xp.where(hot, expand(w.colour), self.slots.colour),
                              xp.where(hot, expand(w.n), self.slots.n),
                              xp.where(hot, expand(w.idx), self.slots.idx),
                              xp.where(hot[..., None], w.v[..., None, :], self.slots.v))
        self.count = self.count + mask
