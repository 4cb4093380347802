"""The attention kind's fabric program (`compiler.kernels.attention`): the forward pass of
scaled dot-product attention over rows x cols cores, query blocks over rows, key blocks over
columns, on the real tokens of each sample (the host sends no pad token).
- **streams**: each item's Q block enters over the west edge of its row on colour Q and is
  multicast along it; its K then V blocks enter over the north edge of its column on colour KV,
  multicast down it; both dense (`Target.dense_values_per_wavelet` values a wavelet, attention
  harvests no zeros), each ended by a control wavelet. A task a wavelet stores it (a fabric-input
  operand: the activation only).
- **the block**: when a core holds an item's Q and K, V, the task that brought the last of them
  computes the block: scores of the pairs the mask lets through (the core holds the mask: it
  skips the rest), the block's row max m and row sum l of exp(s - m), and its partial output
  exp(s - m) V: 2 pairs D MACs and `KIND.score_flops` element operations a score
  (`pe.Datapath.fmac` over their count, as the kind counts them).
- **the row's merge, colour P**: the partials travel west along the row (against Q, so the two
  share no link), (m, l) of each query and head, then the output values: each core after the
  first (the east one) merges an arriving partial into its own (the online softmax: m = max,
  the two sides rescaled by exp(m_side - m) and added), reading it off the fabric (no
  activation: `pe.Datapath.streamed`, `KIND.merge_flops` a value), and sends the merged value on;
  the last core's, normalized by l, leave over the west edge. A row of one core sends its
  output only.
"""
from __future__ import annotations

import numpy as np

from compiler.kernels import KINDS

from .pe import Work
from .programs import register
from .queues import Wavelets
from .router import RAMP, E, N, S, W, route_mask

Q, KV, P = 0, 1, 2
KIND = KINDS["attention"]          # its formulas' constants: score and merge flops, block sizes


def compact(allowed: np.ndarray) -> list[np.ndarray]:
    """Per item, the real tokens: the keys some query may read (pads are masked everywhere)."""
    return [np.flatnonzero(a.any(axis=0)) for a in allowed]


def _dense(values: np.ndarray, per: int) -> tuple:
    """(n, idx, v) of `values` (count,) packed `per` to a wavelet, then a control wavelet."""
    count = len(values)
    waves = -(-count // per)
    v = np.zeros((waves + 1, per), dtype=np.float32)
    v.reshape(-1)[:count] = values
    n = np.clip(count - np.arange(waves + 1) * per, 0, per)
    n[-1] = 0
    return n.astype(np.int8), (np.arange(waves + 1) * per).astype(np.int32), v


def _streams(blocks: list, colour: int, per: int) -> tuple:
    """(Wavelets (edge, length), lengths): each edge core's items' values one after another,
    `blocks[edge][item]` the values of the item."""
    parts = [[_dense(item, per) for item in edge] for edge in blocks]
    lengths = np.array([sum(len(n) for n, _, _ in edge) for edge in parts])
    length = max(int(lengths.max()), 1)
    out = Wavelets(np.full((len(parts), length), colour, np.int16),
                   np.zeros((len(parts), length), np.int8), np.zeros((len(parts), length), np.int32),
                   np.zeros((len(parts), length, per), np.float32))
    for e, edge in enumerate(parts):
        if edge:
            out.n[e, :lengths[e]] = np.concatenate([n for n, _, _ in edge])
            out.idx[e, :lengths[e]] = np.concatenate([i for _, i, _ in edge])
            out.v[e, :lengths[e]] = np.concatenate([v for _, _, v in edge])
    return out, lengths


class Attention:
    """The program (`programs` describes the protocol): `q`, `k`, `v` (items, heads, L, dh) and
    `allowed` (items, L, L) the (query, key) pairs the mask lets through."""

    colours, priority, reduction = 3, (P, Q, KV), (P,)

    def __init__(self, q, k, v, allowed, rows: int, cols: int, per: int):
        if per < 2:
            raise ValueError("the attention program sends a query's (m, l) in one wavelet: it "
                             "needs two values a wavelet (FP16 on the fabric)")
        self.q, self.k, self.v = (np.asarray(a, np.float32) for a in (q, k, v))
        self.allowed = np.asarray(allowed, bool)
        self.items, self.heads, length, self.dh = self.q.shape
        self.region, self.per, self.width = (rows, cols), per, self.heads * self.dh
        self.real = compact(self.allowed)
        n = np.array([len(r) for r in self.real])
        self.qn, self.kn = KIND.block_sizes(n, rows), KIND.block_sizes(n, cols)          # (items, parts)
        self.sq, self.sk = -(-length // rows), -(-length // cols)
        qs, kvs = [[[] for _ in range(p)] for p in (rows, cols)]
        for b, real in enumerate(self.real):
            for r in range(rows):
                at = real[r * -(-len(real) // rows):][:self.qn[b, r]]
                qs[r].append(self.q[b][:, at].reshape(-1))
            for c in range(cols):
                at = real[c * -(-len(real) // cols):][:self.kn[b, c]]
                kvs[c].append(np.concatenate([self.k[b][:, at].reshape(-1), self.v[b][:, at].reshape(-1)]))
        self.streams = {"W": _streams(qs, Q, per), "N": _streams(kvs, KV, per)}
        self.stream_items = {side: np.cumsum(w.n == 0, axis=1) - (w.n == 0)
                             for side, (w, _) in self.streams.items()}
        self.across = cols > 1
        self.n_stats = self.heads * self.qn * self.across                      # (items, rows)
        self.n_out = self.n_stats + -(-(self.qn * self.width) // per)
        self.sinks = {"W": self.n_out.sum(axis=0)}
        self.routes = np.zeros((3, 5, rows, cols), dtype=np.uint8)
        self.routes[Q, W], self.routes[Q, W, :, -1] = route_mask(RAMP, E), route_mask(RAMP)
        self.routes[KV, N], self.routes[KV, N, -1] = route_mask(RAMP, S), route_mask(RAMP)
        self.routes[P, E, :, :-1], self.routes[P, RAMP] = route_mask(RAMP), route_mask(W)
        longest = max(int(w[1].max()) for w in self.streams.values())
        work = 2 * self.sq * self.sk * (self.width + self.heads * KIND.score_flops)
        self.bound = 64 * (self.items * (work + int(self.n_out.max()) * 8) + longest + rows + cols) + 256

    def _blocks(self) -> np.ndarray:
        """(items, rows, cols, sq, sk) the pairs of each core's blocks the mask lets through."""
        rows, cols = self.region
        out = np.zeros((self.items, rows, cols, self.sq, self.sk), dtype=bool)
        for b, real in enumerate(self.real):
            m = len(real)
            a = np.zeros((rows * -(-m // rows) if m else 0, cols * -(-m // cols) if m else 0), bool)
            a[:m, :m] = self.allowed[b][np.ix_(real, real)]
            if m:
                out[b, :, :, :-(-m // rows), :-(-m // cols)] = a.reshape(
                    rows, -(-m // rows), cols, -(-m // cols)).transpose(0, 2, 1, 3)
        return out

    def start(self, xp, datapath) -> None:
        rows, cols = self.region
        self.xp, self.dp = xp, datapath
        b, h, dh = self.items, self.heads, self.dh
        self.qbuf = xp.zeros((b, rows, cols, h, self.sq, dh), dtype=xp.float32)
        self.kbuf, self.vbuf = (xp.zeros((b, rows, cols, h, self.sk, dh), dtype=xp.float32)
                                for _ in range(2))
        self.pm = xp.zeros((b, rows, cols, h, self.sq), dtype=xp.float32)
        self.pl = xp.zeros_like(self.pm)
        self.po = xp.zeros_like(self.qbuf)
        self.a_own, self.a_in = (xp.zeros((rows, cols, h, self.sq), dtype=xp.float32) for _ in range(2))
        self.blocks = xp.asarray(self._blocks())
        self.ri, self.ci = (xp.asarray(a) for a in np.indices(self.region))
        self.qr = xp.asarray(np.broadcast_to(self.qn[:, :, None], (b, rows, cols)).copy())
        self.kc = xp.asarray(np.broadcast_to(self.kn[:, None, :], (b, rows, cols)).copy())
        self.stats = xp.asarray(np.broadcast_to(self.n_stats[:, :, None], (b, rows, cols)).copy())
        self.outs = xp.asarray(np.broadcast_to(self.n_out[:, :, None], (b, rows, cols)).copy())
        zero = lambda: xp.zeros(self.region, dtype=xp.int64)          # noqa: E731
        self.qs, self.ks, self.qpos, self.kpos, self.cs = zero(), zero(), zero(), zero(), zero()
        self.ps, self.pj, self.os, self.oj = zero(), zero(), zero(), zero()
        self.pending = xp.zeros(self.region, dtype=bool)
        self.ps, self.os = self._skip(self.ps), self._skip(self.os)
        self.first, self.last = self.ci == cols - 1, self.ci == 0

    def _at(self, a, item):
        """`a` (items, rows, cols, ...) at each core's `item`."""
        return a[self.xp.minimum(item, self.items - 1), self.ri, self.ci]

    def _skip(self, item):
        """Past the items a core sends nothing of (no query of its row)."""
        for _ in range(self.items):
            item = item + ((item < self.items) & (self._at(self.outs, item) == 0))
        return item

    def ready(self, colour: int, heads):
        xp = self.xp
        return self.cs > self.ps if colour == P else xp.ones(self.region, dtype=bool)

    def run(self, colour: int, heads, mask) -> Work:
        if colour == P:
            return self._merge(heads, mask)
        xp = self.xp
        n, v = heads.n[colour].astype(xp.int64), heads.v[colour]
        done, pos = (self.qs, self.qpos) if colour == Q else (self.ks, self.kpos)
        s = xp.minimum(done, self.items - 1)
        for k in range(self.per):
            self._store(colour, s, pos + k, v[..., k], mask & (n > k))
        control = mask & (n == 0)
        done, pos = done + control, xp.where(control, 0, pos + xp.where(mask, n, 0))
        if colour == Q:
            self.qs, self.qpos = done, pos
        else:
            self.ks, self.kpos = done, pos
        trigger = control & (self.qs > self.cs) & (self.ks > self.cs)
        self.pending = self.pending | trigger
        work = self._compute(trigger)
        return self.dp.task(xp, Work(work.simd, work.sram, None), mask)

    def _store(self, colour: int, s, f, value, valid) -> None:
        """Value `f` of the item's block at its place: Q (heads, q, dh); K then V (heads, k, dh)."""
        xp, dh = self.xp, self.dh
        size = (self._at(self.qr, s) if colour == Q else self._at(self.kc, s)) * dh
        half = size * self.heads
        g = f if colour == Q else xp.where(f < half, f, f - half)
        h, rest = g // xp.maximum(size, 1), g % xp.maximum(size, 1)
        at = (s, self.ri, self.ci, xp.minimum(h, self.heads - 1), rest // dh, rest % dh)
        if colour == Q:
            self.qbuf[at] = xp.where(valid, value, self.qbuf[at])
        else:
            for target, part in ((self.kbuf, f < half), (self.vbuf, f >= half)):
                target[at] = xp.where(valid & part, value, target[at])

    def _compute(self, trigger) -> Work:
        """The block of item cs where `trigger`: scores, row max, row sum, partial output."""
        xp = self.xp
        s = xp.minimum(self.cs, self.items - 1)
        q, k, v = self._at(self.qbuf, s), self._at(self.kbuf, s), self._at(self.vbuf, s)
        allowed = self._at(self.blocks, s)[:, :, None]                    # (R, C, 1, sq, sk)
        score = xp.einsum("rchqd,rchkd->rchqk", q, k) / np.float32(np.sqrt(self.dh))
        score = xp.where(allowed, score, -np.inf)
        m = score.max(axis=-1)
        m = xp.where(xp.isfinite(m), m, np.float32(-1e30))
        e = xp.where(allowed, xp.exp(score - m[..., None]), 0)
        at = (s, self.ri, self.ci)
        for target, value in ((self.pm, m), (self.pl, e.sum(axis=-1)),
                              (self.po, xp.einsum("rchqk,rchkd->rchqd", e, v))):
            keep = trigger.reshape(trigger.shape + (1,) * (value.ndim - 2))
            target[at] = xp.where(keep, value, target[at])
        pairs = allowed[:, :, 0].sum(axis=(-1, -2)).astype(xp.int64)
        ops = 2 * pairs * self.width + KIND.score_flops * self.heads * pairs
        return self.dp.fmac(xp, xp.where(trigger, ops, 0))

    def complete(self, colour: int, mask) -> None:
        if colour == P:
            self.pj = self.pj + mask
            wrap = self.pj >= self._at(self.outs, self.ps)
            self.ps, self.pj = self._skip(self.ps + wrap), self.xp.where(wrap, 0, self.pj)
            return
        finished = mask & self.pending
        self.cs, self.pending = self.cs + finished, self.pending & ~mask

    def _place(self, s, j):
        """(is a statistics wavelet, head, query, first value) of wavelet j of item s."""
        xp = self.xp
        stats, qr = self._at(self.stats, s), xp.maximum(self._at(self.qr, s), 1)
        f = (j - stats) * self.per
        h = xp.where(j < stats, j // qr, f // (qr * self.dh))
        i = xp.where(j < stats, j % qr, (f % (qr * self.dh)) // self.dh)
        return j < stats, xp.minimum(h, self.heads - 1), i, f

    def _merge(self, heads, mask) -> Work:
        """Merge an arriving partial into this core's own (online softmax)."""
        xp = self.xp
        s = xp.minimum(self.ps, self.items - 1)
        is_stats, h, i, f = self._place(s, self.pj)
        at, v = (s, self.ri, self.ci, h, i), heads.v[P]
        m_own, l_own = self.pm[at], self.pl[at]
        m_new = xp.maximum(m_own, v[..., 0])
        a_own, a_in = xp.exp(m_own - m_new), xp.exp(v[..., 0] - m_new)
        st = mask & is_stats
        self.pm[at] = xp.where(st, m_new, m_own)
        self.pl[at] = xp.where(st, a_own * l_own + a_in * v[..., 1], l_own)
        self.a_own[self.ri, self.ci, h, i] = xp.where(st, a_own, self.a_own[self.ri, self.ci, h, i])
        self.a_in[self.ri, self.ci, h, i] = xp.where(st, a_in, self.a_in[self.ri, self.ci, h, i])
        qr = xp.maximum(self._at(self.qr, s), 1)
        for k in range(self.per):
            g = f + k
            ok = mask & ~is_stats & (g < self.heads * qr * self.dh)
            hh, ii = xp.minimum(g // (qr * self.dh), self.heads - 1), (g % (qr * self.dh)) // self.dh
            o = (s, self.ri, self.ci, hh, ii, g % self.dh)
            new = self.a_own[self.ri, self.ci, hh, ii] * self.po[o] + \
                self.a_in[self.ri, self.ci, hh, ii] * v[..., k]
            self.po[o] = xp.where(ok, new, self.po[o])
        flops = xp.where(is_stats, KIND.merge_flops["stats"], KIND.merge_flops["out"] * self.per)
        return self.dp.streamed(xp, self.dp.fmac(xp, flops), mask)

    def emit(self) -> tuple:
        """The next partial to send: this core's own once its block is done (the row's first
        core), else once merged; the last core sends the output normalized by l."""
        xp = self.xp
        s = xp.minimum(self.os, self.items - 1)
        merged = (self.ps > self.os) | ((self.ps == self.os) & (self.pj > self.oj))
        want = (self.os < self.items) & (self.cs > self.os) & (self.first | merged)
        is_stats, h, i, f = self._place(s, self.oj)
        values = xp.zeros(self.region + (self.per,), dtype=xp.float32)
        at = (s, self.ri, self.ci, h, i)
        qr = xp.maximum(self._at(self.qr, s), 1)
        for k in range(self.per):
            g = f + k
            hh, ii = xp.minimum(g // (qr * self.dh), self.heads - 1), (g % (qr * self.dh)) // self.dh
            o = self.po[s, self.ri, self.ci, hh, ii, g % self.dh]
            l = self.pl[s, self.ri, self.ci, hh, ii]
            o = xp.where(self.last & (l > 0), o / xp.where(l > 0, l, 1), o)
            values[..., k] = xp.where(g < self.heads * qr * self.dh, o, 0)
        values[..., 0] = xp.where(is_stats, self.pm[at], values[..., 0])
        if self.per > 1:
            values[..., 1] = xp.where(is_stats, self.pl[at], values[..., 1])
        return want, Wavelets(xp.full(self.region, P, dtype=xp.int16),
                              xp.full(self.region, self.per, dtype=xp.int8),
                              self.oj.astype(xp.int32), values)

    def emitted(self, mask) -> None:
        self.oj = self.oj + mask
        wrap = self.oj >= self._at(self.outs, self.os)
        self.os, self.oj = self._skip(self.os + wrap), self.xp.where(wrap, 0, self.oj)

    def finished(self):
        return (self.cs >= self.items).all() & (self.os >= self.items).all()

    def output(self, run) -> dict:
        """(items, heads, L, dh) the output of each real query, off the west edge."""
        values = run.sinks["W"][0]
        out = np.zeros(self.q.shape, dtype=np.float32)
        rows = self.region[0]
        for r in range(rows):
            at = 0
            for b, real in enumerate(self.real):
                qr = int(self.qn[b, r])
                n = int(self.n_out[b, r])
                flat = values[r, at + int(self.n_stats[b, r]):at + n].reshape(-1)
                at += n
                if qr:
                    tokens = real[r * -(-len(real) // rows):][:qr]
                    out[b][:, tokens] = flat[:self.heads * qr * self.dh].reshape(self.heads, qr, self.dh)
        return {"out": out}

    def reference(self) -> dict:
        out = np.zeros(self.q.shape, dtype=np.float32)
        for b, real in enumerate(self.real):
            score = self.q[b][:, real] @ self.k[b][:, real].transpose(0, 2, 1) / np.sqrt(self.dh)
            score = np.where(self.allowed[b][np.ix_(real, real)], score, -np.inf)
            p = np.exp(score - score.max(axis=-1, keepdims=True))
            out[b][:, real] = (p / p.sum(axis=-1, keepdims=True)) @ self.v[b][:, real]
        return {"out": out}

    def item_done(self, run) -> np.ndarray:
        """(items,) the cycle after each item's last output left the west edge."""
        cycle = run.sinks["W"][2]
        ends = np.cumsum(self.n_out, axis=0)                                # (items, rows)
        done = np.zeros(self.items, dtype=np.int64)
        for r in range(self.region[0]):
            for b in range(self.items):
                if self.n_out[b, r]:
                    done[b] = max(done[b], cycle[r, ends[b, r] - 1] + 1)
        return done


@register("attention", "forward")
def forward(kernel, mapping, target, tensors: dict, harvest: bool = True) -> Attention:
    """`tensors`: "q", "k", "v" (samples, heads, L, dh) and "probs" (samples, heads, L, L) the
    softmax, whose non-zero pairs are the ones the mask lets through (or "allowed" (samples,
    L, L))."""
    missing = [role for role in ("q", "k", "v") if role not in tensors]
    if missing:
        raise NotImplementedError(
            f"the attention program streams q, k and v, and got no {missing}: kernel "
            f"{kernel.name!r} names none (its capture found no Q K^T and P V matmuls), so check "
            "it with its tensors (simulator.fabric.check.compare)")
    allowed = tensors.get("allowed")
    if allowed is None:
        allowed = (np.asarray(tensors["probs"]) != 0).any(axis=1)
    return Attention(tensors["q"], tensors["k"], tensors["v"], allowed, mapping.rows,
                     mapping.cols, target.dense_values_per_wavelet)
