"""Bounded FIFOs of wavelets, one per (lane, core), vectorized over the fabric with `xp`.

A wavelet is 32 bits on the link (Hot Chips 2020; `Target.link_bits`): here its fields are kept
apart so the model can read them, `Wavelets`: the colour it travels on, how many values it
carries `n` (0 for a control wavelet, 1 for a sparse (value, index) wavelet, up to
`Target.dense_values_per_wavelet` for a dense one), the index of its first value `idx` and the
values `v` (a trailing axis of `dense_values_per_wavelet`).

Each queue is a ring buffer of `depth` slots, the queues stored flat (queue, slot). A read
gathers the head slot of every queue that holds a wavelet and a write scatters into the tail slot
of every queue written, by advanced indexing over those queues only (one index per queue, so no
two writes meet): one call moves a wavelet in or out of every queue of the fabric at once, with
no Python loop over cores, on NumPy and CuPy alike, and its cost follows the queues it touches,
not the fabric's size (on a large fabric most queues are idle in any one cycle).
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
    """FIFOs of `depth` wavelets for every lane and core of `shape` (e.g. (ports, rows, cols));
    `head` and `count` are int8 (a queue holds at most 127 wavelets)."""

    def __init__(self, xp, shape: tuple, depth: int, values: int):
        if not 1 <= depth <= 127:
            raise ValueError(f"a queue must hold at least one wavelet and at most 127, got depth {depth}")
        self.xp, self.shape, self.depth = xp, tuple(shape), depth
        self.size = 1
        for n in self.shape:
            self.size *= n
        self.slots = empty(xp, (self.size, depth), values)
        self.head = xp.zeros(self.shape, dtype=xp.int8)
        self.count = xp.zeros(self.shape, dtype=xp.int8)

    def space(self):
        """Where a queue can take one more wavelet (back-pressure: a full queue takes none)."""
        return self.count < self.depth

    def peek(self) -> Wavelets:
        """The wavelet at the head of every queue (zero in every field where it is empty)."""
        xp, s = self.xp, self.slots
        live = xp.flatnonzero(self.count.reshape(-1) > 0)
        at = (live, self.head.reshape(-1)[live])
        out = empty(xp, (self.size,), s.v.shape[-1])
        for field, slot in zip(out, s):
            field[live] = slot[at]
        return Wavelets(*(f.reshape(self.shape + f.shape[1:]) for f in out))

    def pop(self, mask) -> None:
        """Drop the head wavelet of the queues where `mask` (each must hold one)."""
        self.head = (self.head + mask) % self.depth
        self.count = self.count - mask

    def push(self, mask, w: Wavelets) -> None:
        """Append `w` (broadcast to the queues) to the queues where `mask` (each must have
        `space`)."""
        xp = self.xp
        mask = xp.broadcast_to(mask, self.shape)
        at = xp.nonzero(mask)
        flat = xp.ravel_multi_index(at, self.shape)
        tail = (self.head[at] + self.count[at]) % self.depth
        for field, new in zip(self.slots, w):
            field[flat, tail] = xp.broadcast_to(new, self.shape + field.shape[2:])[at]
        self.count = self.count + mask
