"""A resident matrix times a streamed operand, partial sums chained across the region: the
dataflow pattern of a matmul's passes (Hot Chips 2020), as one fabric program.

`a` (items, F_in) streams in; core (r, c) holds a tile of `m` (F_in, F_out) and computes its
share of `a @ m`. With `axis` 0, F_in is tiled over rows and F_out over columns (a matmul's
forward: x along rows, partial sums down the columns); with `axis` 1 the other way round (its
dX: dY along columns, partial sums across the rows).
- **the stream, colour A**: each item's tile of `a` enters over the west edge of its row (axis
  0) or the north edge of its column (axis 1) and is multicast along it. Its sender filters
  zeros: a tile goes as one (value, index) wavelet per non-zero when that is fewer than its
  dense wavelets, else densely (`Target.dense_values_per_wavelet` values a wavelet); a control
  wavelet (no value) ends each item's tile.
- **the stream task**: per value, an FMAC of the value with the tile's row of `m` into the
  item's accumulator; the receiver skips zero values (no work), as the analytic model counts.
- **partial sums, colour P**: the first core of each chain sends its sums on once its own
  stream for the item is done; a later core's P task adds each arriving sum into its own, once
  its own stream for that item is done, and its PE sends the sum on. The chain's last core
  sends them over the far edge: the output. The add reads the sum straight off the fabric (a
  fabin DSD operand of one `@fadds` over the item's sums, Cerebras csl-examples
  tutorials/gemv-06-routes), so an arriving sum costs its add's cycle and no task activation.
"""
from __future__ import annotations

import numpy as np

from compiler.cost import tile_sizes

from .pe import Work
from .queues import Wavelets, empty
from .router import RAMP, E, N, S, W, route_mask

A, P = 0, 1
# per axis: the side the stream enters over, and the side the chain's outputs leave over
SIDES = {0: ("W", "S"), 1: ("N", "E")}


def tile_stream(a: np.ndarray, parts: int, values: int, harvest: bool) -> tuple:
    """(Wavelets (parts, length), lengths (parts,)): the wavelets entering each of `parts`
    tiles of `a` (items, F), item by item: zeros filtered where that sends fewer, a control
    wavelet after each item's tile."""
    items, features = a.shape
    size, step = tile_sizes(features, parts), -(-features // parts)
    slots = step + 1                                                     # every value + control
    at, k_ = np.arange(step), np.arange(slots)
    padded = np.zeros((items, parts * step), dtype=np.float32)
    padded[:, :features] = a
    padded = padded.reshape(items, parts, step)
    nonzero = (padded != 0) & (at < size[:, None])
    wide = np.zeros((items, parts, slots * values), dtype=np.float32)
    wide[..., :step] = padded
    nnz, dense = nonzero.sum(axis=-1), -(-size // values)
    sparse = harvest & (nnz < dense)                                     # (items, parts)
    length = np.where(sparse, nnz, dense)                                # data wavelets
    data = k_ < length[..., None]
    pos = np.zeros((items, parts, slots), dtype=np.int64)
    pos[..., :step] = np.argsort(~nonzero, axis=-1, kind="stable")      # the non-zeros first
    start = k_ * values
    n = np.where(sparse[..., None], 1, np.clip(size[:, None] - start, 0, values)[None]) * data
    idx = np.where(sparse[..., None], pos, start) * data
    one = np.take_along_axis(wide, pos, axis=-1)[..., None] * np.eye(values, dtype=np.float32)[0]
    v = np.where(sparse[..., None, None], one, wide.reshape(items, parts, slots, values))
    v = v * data[..., None]
    keep = _by_part(k_ <= length[..., None])                             # data and control
    order = np.argsort(~keep, axis=1, kind="stable")

    def pick(field):
        flat = _by_part(field)
        return np.take_along_axis(flat, order.reshape(order.shape + (1,) * (flat.ndim - 2)), axis=1)
    w = Wavelets(np.full(keep.shape, A, dtype=np.int16), pick(n).astype(np.int8),
                 pick(idx).astype(np.int32), pick(v).astype(np.float32))
    return w, keep.sum(axis=1)


def _by_part(a: np.ndarray) -> np.ndarray:
    """(items, parts, slots, ...) -> (parts, items * slots, ...): each part's wavelets in order."""
    return np.swapaxes(a, 0, 1).reshape((a.shape[1], a.shape[0] * a.shape[2]) + a.shape[3:])


def routes(rows: int, cols: int, axis: int) -> np.ndarray:
    """(2, 5, rows, cols) route bits: the stream from its edge to the ramp and on (the last core
    to the ramp only); partial sums from the previous core to the ramp, from the ramp on."""
    out = np.zeros((2, 5, rows, cols), dtype=np.uint8)
    if axis == 0:
        out[A, W], out[P, N, 1:], out[P, RAMP] = route_mask(RAMP, E), route_mask(RAMP), route_mask(S)
        out[A, W, :, -1] = route_mask(RAMP)
    else:
        out[A, N], out[P, W, :, 1:], out[P, RAMP] = route_mask(RAMP, S), route_mask(RAMP), route_mask(E)
        out[A, N, -1, :] = route_mask(RAMP)
    return out


def tiles_of(m: np.ndarray, rows: int, cols: int, axis: int) -> np.ndarray:
    """(rows, cols, step_in, step_out): each core's zero-padded tile of `m` (F_in, F_out)."""
    parts = (rows, cols) if axis == 0 else (cols, rows)
    steps = [-(-d // p) for d, p in zip(m.shape, parts)]
    padded = np.zeros((parts[0] * steps[0], parts[1] * steps[1]), dtype=np.float32)
    padded[:m.shape[0], :m.shape[1]] = m
    tiles = padded.reshape(parts[0], steps[0], parts[1], steps[1])
    return tiles.transpose((0, 2, 1, 3) if axis == 0 else (2, 0, 1, 3))


class Chain:
    """The program (`programs` describes the protocol); `chained`: whether it computes `a @ m`
    at all (a matmul's first layer has no dX)."""

    colours = 2
    priority = (P, A)        # a waiting partial sum unblocks the rest of its chain: serve it first
    reduction = (P,)         # the partial-sum tasks (`check` reports them apart)

    def __init__(self, a, m, rows: int, cols: int, axis: int, values: int, harvest: bool,
                 chained: bool = True):
        self.a, self.m = np.asarray(a, np.float32), np.asarray(m, np.float32)
        self.items, (f_in, f_out) = self.a.shape[0], self.m.shape
        if self.a.shape[1] != f_in:
            raise ValueError(f"the streamed operand has {self.a.shape[1]} features but the "
                             f"resident one {f_in} rows")
        self.region, self.axis, self.harvest, self.values = (rows, cols), axis, harvest, values
        self.chained = chained
        parts_in, parts_out = (rows, cols) if axis == 0 else (cols, rows)
        self.t_out, self.step_out = tile_sizes(f_out, parts_out), -(-f_out // parts_out)
        self.step_in = -(-f_in // parts_in)
        self.routes = routes(rows, cols, axis)
        enter, leave = SIDES[axis]
        self.streams = {enter: tile_stream(self.a, parts_in, values, harvest)}
        control = self.streams[enter][0].n == 0                          # each item's last
        self.stream_items = {enter: np.cumsum(control, axis=1) - control}
        self.sinks = {leave: self.items * self.t_out} if chained else {}
        longest = int(self.streams[enter][1].max())
        self.bound = 64 * (longest * (self.step_out + self.step_in + 2) +
                           self.items * self.step_out * 4 + rows + cols) + 256

    def start(self, xp, datapath) -> None:
        """Device state: the tiles, accumulators, and the counters of the stream and P tasks
        and of the PE's sends."""
        rows, cols = self.region
        self.xp, self.dp = xp, datapath
        self.tiles = xp.asarray(tiles_of(self.m, rows, cols, self.axis))
        self.acc = xp.zeros((self.items, rows, cols, self.step_out), dtype=xp.float32)
        out = self.t_out[None, :] if self.axis == 0 else self.t_out[:, None]
        self.n_out = xp.asarray(np.broadcast_to(out, (rows, cols)).astype(np.int64))
        self.ri, self.ci = (xp.asarray(a) for a in np.indices((rows, cols)))
        zero = lambda: xp.zeros((rows, cols), dtype=xp.int64)
        self.xs, self.ps, self.pj, self.oj = zero(), zero(), zero(), zero()
        self.ends = xp.zeros((rows, cols), dtype=bool)          # the running task ends an item
        # an empty tile (or no chain) sends nothing
        self.os = xp.where((self.n_out > 0) & self.chained, 0, self.items)
        self.first = (self.ri if self.axis == 0 else self.ci) == 0

    def ready(self, colour: int, heads):
        return self.xs > self.ps if colour == P else self.xs >= 0

    def run(self, colour: int, heads, mask) -> Work:
        return self._psum(heads, mask) if colour == P else self._stream(heads, mask)

    def finished(self):
        """Every core has taken every item's stream."""
        return (self.xs >= self.items).all()

    def _stream(self, heads, mask) -> Work:
        """Accumulate each value of a stream wavelet times its row of the tile; a control
        wavelet ends the item."""
        xp = self.xp
        h = Wavelets(*(f[A] for f in heads))
        counted = xp.zeros(self.region, dtype=xp.int64)
        contrib = xp.zeros(self.region + (self.step_out,), dtype=xp.float32)
        s = xp.minimum(self.xs, self.items - 1)
        for k in range(self.values):
            valid = mask & (h.n > k)
            value = xp.where(valid, h.v[..., k], 0)
            pos = xp.clip(h.idx + k, 0, self.step_in - 1).astype(xp.intp)
            if self.chained:
                rows = xp.take_along_axis(self.tiles, pos[..., None, None], axis=2)[:, :, 0]
                contrib += value[..., None] * rows
            self.each_value(s, value, pos)
            counted += valid & ((value != 0) if self.harvest else True)
        self.acc[s, self.ri, self.ci] += contrib
        self.ends = xp.where(mask, h.n == 0, self.ends)          # a control wavelet
        return self.dp.task(xp, self.value_work(s, counted), mask)

    def complete(self, colour: int, mask) -> None:
        """A finished control task ends its item; a finished P task moves to the next sum."""
        if colour == A:
            self.xs = self.xs + (mask & self.ends)
            return
        self.pj = self.pj + mask
        wrap = self.pj >= self.n_out
        self.ps, self.pj = self.ps + wrap, self.xp.where(wrap, 0, self.pj)

    def each_value(self, s, value, pos) -> None:
        """What else a value of the stream does (nothing here; dW in the matmul backward)."""

    def value_work(self, s, counted) -> Work:
        """The work of `counted` values: an FMAC over this core's outputs each."""
        op = self.dp.fmac(self.xp, self.n_out if self.chained else self.n_out * 0)
        return Work(op.simd * counted, op.sram * counted, None)

    def _psum(self, heads, mask) -> Work:
        """Add an arriving partial sum into this core's own for the same output: one cycle of
        the datapath, read off the fabric (no task activation, `pe.Datapath.streamed`)."""
        xp = self.xp
        s, j = xp.minimum(self.ps, self.items - 1), xp.minimum(self.pj, self.step_out - 1)
        self.acc[s, self.ri, self.ci, j] += xp.where(mask, heads.v[P, ..., 0], 0)
        return self.dp.streamed(xp, self.dp.fmac(xp, xp.ones_like(self.n_out)), mask)

    def emit(self) -> tuple:
        """The PE's next partial sum to send on, where it is complete: its own stream for the
        item is done and (after the chain's first core) the sum from before was added."""
        xp = self.xp
        added = (self.ps > self.os) | ((self.ps == self.os) & (self.pj > self.oj))
        want = (self.os < self.items) & (self.xs > self.os) & (self.first | added)
        s, j = xp.minimum(self.os, self.items - 1), xp.minimum(self.oj, self.step_out - 1)
        v = empty(xp, self.region, self.values).v
        v[..., 0] = self.acc[s, self.ri, self.ci, j]
        return want, Wavelets(xp.full(self.region, P, dtype=xp.int16), xp.ones(self.region, xp.int8),
                              j.astype(xp.int32), v)

    def emitted(self, mask) -> None:
        xp = self.xp
        self.oj = self.oj + mask
        wrap = self.oj >= self.n_out
        self.os, self.oj = self.os + wrap, xp.where(wrap, 0, self.oj)

    def item_done(self, run) -> np.ndarray | None:
        """(items,) the cycle after each item's last sum left the far edge; None without a
        chain."""
        if not self.chained:
            return None
        cycle = run.sinks[SIDES[self.axis][1]][2]
        done = np.zeros(self.items, dtype=np.int64)
        for edge, t in enumerate(self.t_out):
            if t:
                done = np.maximum(done, cycle[edge, t - 1::t][:self.items] + 1)
        return done

    def product(self, run) -> np.ndarray:
        """(items, F_out) `a @ m` read off the far edge's sink, item by item, each core's
        outputs in turn."""
        value = run.sinks[SIDES[self.axis][1]][0][..., 0]
        j, tiles = np.arange(self.step_out), len(self.t_out)
        at = np.arange(self.items)[None, :, None] * self.t_out[:, None, None] + j
        got = np.take_along_axis(value, np.minimum(at, value.shape[1] - 1).reshape(tiles, -1), axis=1)
        got = np.where(j < self.t_out[:, None, None], got.reshape(at.shape), 0)
        return got.transpose(1, 0, 2).reshape(self.items, -1)[:, :self.m.shape[1]]
