"""The generated kind's fabric program: an element-wise kernel (`compiler.kernels.generated`)
laid over its rectangle, each pass (forward and backward alike: the kind charges them the same).

Elements of a sample are tiled ceil(e / cores) to a core, cores in row-major order (the
generated kind's nest unrolls e over every core). Data enters and leaves over the region's
edges, as a route from the previous kernel arrives over a side (`compiler.links`):
- **in**: each row's tiles enter over its west edge on colour IN, item by item, the row's
  cores in turn, a wavelet each (so that a core still busy with its last wavelet holds up the
  shared link no longer than its own share: sent core by core, the link would wait on each
  core's whole tile in turn), packed densely (generated kernels harvest no zeros), each wavelet indexed by its first
  element; the route multicasts east, and each core's filter keeps its own range of elements
  for its ramp and passes on only what lies beyond (`router.Router`, filters);
- **the task**: per wavelet, the kernel's `flops_per_point` element operations on each value
  (`pe.Datapath.fmac` over n x flops elements: the SIMD lanes and the SRAM ports);
- **out**: each result wavelet leaves its core south on the output colour and passes the cores
  below it to the south edge.
So the west link into a row carries the tiles of all of its cores, and the south link out of a
column those of all of its: the fabric's link time is the row's (or column's) data, where the
analytic model charges each core's link its own tile only.
The values pass through unchanged (the element function is not modelled: only its cost), so the
south edge must give back every element once.
"""
from __future__ import annotations

import numpy as np

from .pe import Work
from .programs import register
from .queues import Wavelets
from .router import RAMP, E, N, S, W, route_mask

IN, OUT = 0, 1


def routes(rows: int, cols: int) -> np.ndarray:
    """(2, 5, rows, cols): IN from the west to the ramp and east (the filters pick what goes
    where), to the ramp only at the last column; OUT from a ramp or from the north, south."""
    out = np.zeros((2, 5, rows, cols), dtype=np.uint8)
    out[IN, W] = route_mask(RAMP, E)
    out[IN, W, :, -1] = route_mask(RAMP)
    out[OUT, RAMP] = route_mask(S)
    out[OUT, N, 1:] = route_mask(S)
    return out


def filters(rows: int, cols: int, tile: int) -> np.ndarray:
    """(2, 2, rows, cols) [lo, hi) of each core's elements on IN; OUT unfiltered (lo > hi)."""
    lo = np.arange(rows * cols).reshape(rows, cols) * tile
    out = np.empty((2, 2, rows, cols), dtype=np.int32)
    out[IN, 0], out[IN, 1] = lo, lo + tile
    out[OUT, 0], out[OUT, 1] = 1, 0
    return out


def row_streams(values: np.ndarray, rows: int, cols: int, per_wavelet: int) -> tuple:
    """(Wavelets (rows, length), lengths (rows,), wavelets a core gets an item (rows, cols)):
    each row's tiles of `values` (items, e), item by item, the row's cores in turn a wavelet
    each, `per_wavelet` values a wavelet, idx the index of its first element in the item."""
    items, e = values.shape
    tile = -(-e // (rows * cols))
    slots = -(-tile // per_wavelet)
    padded = np.zeros((items, rows * cols * slots * per_wavelet), dtype=np.float32)
    at = np.arange(rows * cols)[:, None] * tile + np.arange(slots * per_wavelet)[None]
    inside = (np.arange(slots * per_wavelet)[None] < tile) & (at < e)          # (cores, slot values)
    where = np.flatnonzero(inside.reshape(-1))
    padded[:, where] = values[:, at.reshape(-1)[where]]
    v = padded.reshape(items, rows, cols, slots, per_wavelet)
    n = inside.reshape(rows, cols, slots, per_wavelet).sum(axis=-1)            # values a wavelet
    idx = np.broadcast_to(at.reshape(rows, cols, slots, per_wavelet)[..., 0], (items,) + n.shape)
    keep = np.broadcast_to(n[None] > 0, idx.shape)
    # (items, rows, cols, slots, ...) -> (rows, items * slots * cols, ...): slot-major in a row
    flat = lambda a: np.moveaxis(np.swapaxes(a, 2, 3), 1, 0).reshape((rows, -1) + a.shape[4:])
    keep_f = flat(keep)
    order = np.argsort(~keep_f, axis=1, kind="stable")
    pick = lambda a: np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)
    w = Wavelets(np.full(keep_f.shape, IN, dtype=np.int16),
                 pick(flat(np.broadcast_to(n[None], idx.shape))).astype(np.int8),
                 pick(flat(idx)).astype(np.int32), pick(flat(v)).astype(np.float32))
    return w, keep_f.sum(axis=1), (n > 0).sum(axis=-1)


class Elementwise:
    """The program (`programs` describes the protocol): `values` (items, e), `flops` element
    operations a value."""

    colours, priority, reduction = 2, (IN,), ()

    def __init__(self, values, rows: int, cols: int, flops: int, per_wavelet: int):
        self.values = np.asarray(values, np.float32)
        self.items, self.e = self.values.shape
        self.region, self.flops, self.per_wavelet = (rows, cols), flops, per_wavelet
        self.routes = routes(rows, cols)
        self.filters = filters(rows, cols, -(-self.e // (rows * cols)))
        w, lengths, self.per_item = row_streams(self.values, rows, cols, per_wavelet)
        self.streams = {"W": (w, lengths)}
        per_row = np.maximum(self.per_item.sum(axis=1), 1)[:, None]         # a row's, an item
        self.stream_items = {"W": np.arange(w.n.shape[1])[None, :] // per_row}
        self.per_core = self.per_item * self.items                             # (rows, cols)
        self.sinks = {"S": self.per_core.sum(axis=0)}
        self.bound = 64 * (int(lengths.max()) * (flops + 2) + rows + cols) + 256

    def start(self, xp, datapath) -> None:
        rows, cols = self.region
        self.xp, self.dp = xp, datapath
        slots = max(int(self.per_core.max()), 1)
        self.out_v = xp.zeros((rows, cols, slots, self.per_wavelet), dtype=xp.float32)
        self.out_idx = xp.zeros((rows, cols, slots), dtype=xp.int32)
        self.made = xp.zeros((rows, cols), dtype=xp.int64)
        self.item_wavelets = xp.asarray(np.maximum(self.per_item, 1).astype(np.int64))
        self.sent = xp.zeros((rows, cols), dtype=xp.int64)
        self.ri, self.ci = (xp.asarray(a) for a in np.indices((rows, cols)))

    def ready(self, colour: int, heads):
        return self.xp.ones(self.region, dtype=bool)

    def run(self, colour: int, heads, mask) -> Work:
        """The element work on a wavelet's values; its result waits to be sent."""
        xp = self.xp
        slot = xp.minimum(self.made, self.out_idx.shape[2] - 1)
        self.out_v[self.ri, self.ci, slot] = xp.where(mask[..., None], heads.v[colour],
                                                       self.out_v[self.ri, self.ci, slot])
        item = self.made // self.item_wavelets            # tasks run one at a time, in order
        at = (item * self.e + heads.idx[colour]).astype(xp.int32)
        self.out_idx[self.ri, self.ci, slot] = xp.where(mask, at, self.out_idx[self.ri, self.ci, slot])
        op = self.dp.fmac(xp, heads.n[colour].astype(xp.int64) * self.flops)
        return self.dp.task(xp, Work(op.simd, op.sram, None), mask)

    def complete(self, colour: int, mask) -> None:
        """A finished task's result can be sent."""
        self.made = self.made + mask

    def emit(self) -> tuple:
        xp = self.xp
        slot = xp.minimum(self.sent, self.out_idx.shape[2] - 1)
        return self.sent < self.made, Wavelets(
            xp.full(self.region, OUT, dtype=xp.int16),
            xp.full(self.region, self.per_wavelet, dtype=xp.int8),
            self.out_idx[self.ri, self.ci, slot], self.out_v[self.ri, self.ci, slot])

    def emitted(self, mask) -> None:
        self.sent = self.sent + mask

    def finished(self):
        return (self.sent >= self.made).all()

    def output(self, run) -> dict:
        """(items, e) the values back off the south edge, placed by their index (item * e +
        element: a core's results carry their item)."""
        values, idx, _, count, _ = run.sinks["S"]
        out = np.full(self.items * self.e, np.nan, dtype=np.float32)
        got = np.arange(values.shape[1])[None] < count[:, None]
        first = idx[got] % self.e
        tile = -(-self.e // (self.region[0] * self.region[1]))
        for k in range(self.per_wavelet):   # a wavelet's values lie side by side in one tile
            keep = (first % tile + k < tile) & (first + k < self.e)
            out[idx[got][keep] + k] = values[..., k][got][keep]
        return {"out": out.reshape(self.items, self.e)}

    def reference(self) -> dict:
        return {"out": self.values}

    def item_done(self, run) -> np.ndarray:
        """(items,) the cycle after each item's last result left the south edge."""
        _, idx, cycle, count, _ = run.sinks["S"]
        got = np.arange(idx.shape[1])[None] < count[:, None]
        done = np.zeros(self.items, dtype=np.int64)
        np.maximum.at(done, idx[got] // self.e, cycle[got] + 1)
        return done


def _program(kernel, mapping, target, tensors: dict, harvest: bool = True) -> Elementwise:
    """`tensors`: "out" (samples, ...) the kernel's streamed value (its elements a sample), or
    none: a generated kernel sends every value, so its values do not change its time (zeros
    then stream)."""
    values = tensors.get("out")
    values = np.zeros((kernel.samples, kernel.nest.extent("e")), np.float32) if values is None \
        else np.asarray(values, dtype=np.float32).reshape(kernel.samples, -1)
    if values.shape[1] != kernel.nest.extent("e"):
        raise ValueError(f"kernel {kernel.name!r} has {kernel.nest.extent('e')} elements a sample; "
                         f"got values of {values.shape[1]}")
    return Elementwise(values, mapping.rows, mapping.cols, kernel.nest.flops_per_point,
                       target.dense_values_per_wavelet)


register("generated", "forward")(_program)
register("generated", "backward")(_program)
