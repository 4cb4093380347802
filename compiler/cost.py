"""The one evaluation of the cost model: a kernel's components -> per-core cycles, kind-agnostic.

Each kernel kind (`compiler.kernels`) turns its counts into `Components`: per core and per sample,
the compute cycles (MACs / SIMD width, plus element work) and the busiest link of the forward and
the backward pass. Everything after that is the same for every kind, and the static estimate
(`compiler.estimate`, assumed counts) and the measurement (`simulator.measure`, counts from the
tensors) both go through this module (DESIGN.md, "Cost model"):

- a core's work in a pass is its compute, or its SRAM traffic where the ports are slower
  (`sram_factor`), plus one task activation per wavelet it receives (`Target.task_cycles`),
  plus its adds of operands read straight off the fabric (partial sums: one datapath cycle a
  wavelet and no activation, the SDK's fabin DSD operand, csl-examples tutorials/gemv-06);
- a pass takes max(work, link in, link out): the core streams while it computes (Hot Chips
  2020, dataflow);
- a sample costs forward + backward on the same cores, summed over the kernel's calls; the
  kernel's time for a sample is its busiest core's;
- the once-per-step update of the weights each core holds, plus the ring all-reduce of the
  gradients across data-parallel replicas (`update_cycles`);
- the compute-only and link-only times behind Compute and Transmission Samples/s (`split`);
- the busy cycles of every core of every replica (`replica_busy`).

The shared helpers for counts live here too: tile sizes of an unrolled dimension and the wavelets
a streamed operand needs. Every constant comes from `Target`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


# Element operations per weight for one optimizer update (read off torch.optim's formulas).
UPDATE_FLOPS = {"sgd": 2, "sgd_momentum": 5, "adam": 12, "adamw": 13}
FP32_BYTES = 4


@functools.lru_cache(maxsize=1024)
def tile_sizes(extent: int, parts: int) -> np.ndarray:
    """Lengths of `parts` contiguous tiles of ceil(extent / parts) (the last ones may be short).
    Cached, so the array is read-only."""
    step = math.ceil(extent / parts)
    starts = np.arange(parts) * step
    sizes = np.clip(extent - starts, 0, step)
    sizes.flags.writeable = False
    return sizes


def dense_wavelets(values, target):
    """Wavelets to send `values` packed densely: `Target.dense_values_per_wavelet` to a
    wavelet (two FP16 values in one 32-bit wavelet, Hot Chips 2020)."""
    return np.ceil(np.asarray(values) / target.dense_values_per_wavelet)


def wavelets(nonzeros, dense):
    """Wavelets to send `nonzeros` of a stream that takes `dense` wavelets packed densely: the
    sender filters zeros into one (value, index) wavelet per non-zero when that is fewer (Hot
    Chips 2020). Dense counts (harvesting off) always pick the dense packing."""
    return np.minimum(nonzeros, dense)


def streamed_wavelets(nonzeros, dense, items):
    """Wavelets a core receives of a stream of `items` tiles (`wavelets` each), each tile ended
    by one control wavelet: a receiver of a filtered stream cannot know where a tile ends from
    its count, so the sender marks it. A control wavelet travels the same route as the data
    and activates a control task on the receiving PE (Cerebras SDK, csl-examples "Topic 7:
    Switches and Control Entrypoints"), so it costs a link cycle and an activation like a
    data wavelet (the fabric model, `simulator.fabric.chain`)."""
    return wavelets(nonzeros, dense) + items


def sent_share(density, target):
    """The share of a stream's dense wavelets its sender sends when it filters zeros: one
    (value, index) wavelet per non-zero where that is fewer (`wavelets`), at `density`."""
    return np.minimum(1.0, np.asarray(density, dtype=np.float64) * target.dense_values_per_wavelet)


# ------------------------------------------------------------------------------- evaluation

def sram_factor(target) -> float:
    """SRAM cycles per cycle of SIMD work: each lane of a fused multiply-add reads two operands
    and writes one, `value_bits` wide, through ports of `Target.sram_read_bytes` and
    `sram_write_bytes` per cycle (Hot Chips 2019: two 64-bit reads and one 64-bit write per
    core per cycle, which four FP16 lanes exactly use; FP32 values take twice the cycles)."""
    value = target.value_bits / 8
    return max(2 * target.simd * value / target.sram_read_bytes,
               target.simd * value / target.sram_write_bytes)


def core_terms(target) -> dict:
    """The per-core constants every kind hands `Components`: task activation cycles per
    wavelet received and the SRAM factor."""
    return {"task": float(target.task_cycles), "sram": sram_factor(target)}


@dataclass(frozen=True)
class Components:
    """Per-core cycle terms of one kernel, each broadcastable to (samples, calls, rows, cols)
    (the distinct counted samples, `kernels.base.Counts`) and as small as its own dependencies
    allow: each pass's compute (MACs / SIMD width, plus element work), the wavelets its busiest
    link in carries and those its busiest link out carries; `macs` (samples,) the MACs each
    sample executes. A kernel called once per recurrent step has one entry per call. `task`
    and `sram` (`core_terms`): activation cycles per wavelet received, SRAM cycles per compute
    cycle. `fwd_reduce`, `bwd_reduce`: cycles of adds whose operand is read off the fabric as
    it arrives (a partial sum chain: one a wavelet, no activation, no SRAM factor: the port
    traffic of a one-value add fits a cycle). `fwd_recv`, `bwd_recv`: the wavelets the core's
    PE takes, each activating a task, where fewer than its busiest link in carries (a link
    that carries its neighbours' tiles too); None: the link in's. `fwd_drain`, `bwd_drain`:
    what a core sends only once its sample's stream is done (its partial sums, when no core
    after it adds them as they come), the tail of a run (`fill_cycles`)."""
    fwd_compute: Any
    fwd_in: Any
    fwd_out: Any
    bwd_compute: Any
    bwd_in: Any
    bwd_out: Any
    macs: np.ndarray
    task: float = 0.0
    sram: float = 1.0
    fwd_reduce: Any = 0.0
    bwd_reduce: Any = 0.0
    fwd_recv: Any = None
    bwd_recv: Any = None
    fwd_drain: Any = 0.0
    bwd_drain: Any = 0.0

    def work(self, compute, received, reduce=0.0):
        """A core's busy cycles in a pass: compute (or SRAM traffic, if slower) plus a task
        activation per wavelet received, plus the adds of operands off the fabric."""
        return compute * max(1.0, self.sram) + self.task * received + reduce

    def received(self, pass_: str):
        """The wavelets the core's PE takes in pass "fwd" or "bwd"."""
        recv = getattr(self, f"{pass_}_recv")
        return getattr(self, f"{pass_}_in") if recv is None else recv

    @property
    def fwd_work(self):
        return self.work(self.fwd_compute, self.received("fwd"), self.fwd_reduce)

    @property
    def bwd_work(self):
        return self.work(self.bwd_compute, self.received("bwd"), self.bwd_reduce)

    @property
    def fwd_link(self):
        return np.maximum(self.fwd_in, self.fwd_out)

    @property
    def bwd_link(self):
        return np.maximum(self.bwd_in, self.bwd_out)

    @property
    def shape(self) -> tuple[int, ...]:
        """The broadcast shape of the terms (a size-1 axis where no term varies)."""
        return np.broadcast(self.fwd_compute, self.fwd_in, self.fwd_out, self.bwd_compute,
                            self.bwd_in, self.bwd_out, self.fwd_reduce, self.bwd_reduce).shape


def pass_terms(c: Components) -> list[tuple[Any, Any]]:
    """Each pass's (work, link) of a core: a pass is as slow as the core's work or its busiest
    link, the core streaming while it computes (Hot Chips 2020, dataflow)."""
    return [(c.fwd_work, c.fwd_link), (c.bwd_work, c.bwd_link)]


def per_core_cycles(c: Components, shape: tuple[int, ...]) -> np.ndarray:
    """(samples, rows, cols) cycles of each core for each sample: forward + backward on the
    same cores, summed over the calls. `shape` is (samples, calls, rows, cols)."""
    total = passes_total(pass_terms(c))
    if total.shape != shape:
        total = np.broadcast_to(total, shape)
    return total[:, 0] if shape[1] == 1 else total.sum(axis=1)


def busiest_core(core: np.ndarray) -> np.ndarray:
    """(samples,): the busiest core's cycles, the kernel's time for a sample."""
    return core.reshape(core.shape[0], -1).max(axis=1)


def run_cycles(c: Components, shape: tuple[int, ...], rows: np.ndarray) -> np.ndarray:
    """(V, S) the kernel's time for each sample of each variant's run (`rows` (V, S): the
    distinct sample of each; `shape` (distinct, calls, rows, cols)). Cores run decoupled, each
    taking its wavelets from its own queues, and a core's PE works on the next sample while its
    router still sends the last one's results (the fabric model, `simulator.fabric.check`). So
    a run takes, on each core, each pass's max(work summed over the run, link summed over the
    run), and the kernel its busiest core's: not the sum of each sample's busiest core, nor of
    each sample's max(work, link). Each sample is charged its share of that run: the busiest
    core's per-sample cycles (`per_core_cycles`), scaled to sum to the run's. With one distinct
    sample (the static estimate) it is `busiest_core`. The terms are summed over the runs in
    their own broadcast shapes (one product per term for every variant), and per sample only
    at each run's busiest core (`share_runs`)."""
    distinct, calls, height, width = shape
    passes = [[_compact(t) for t in pass_] for pass_ in pass_terms(c)]

    def sums(times):
        return [[_run_sum(times, t, calls) for t in pass_] for pass_ in passes]

    def at(r, col):
        core = passes_total([[_at_cores(t, r, col) for t in pass_] for pass_ in passes])
        return np.broadcast_to(core, (distinct, calls, len(r))).sum(axis=1)
    return share_runs(rows, distinct, (height, width), sums, at)


def share_runs(rows: np.ndarray, distinct: int, cores: tuple[int, int], sums, at) -> np.ndarray:
    """`run_cycles` from the kernel's terms as functions: `sums(times)` each pass's (work,
    link) of every core summed over each run (V, rows or 1, cols or 1), run v taking distinct
    sample u `times[v, u]` times; `at(r, c)` (distinct, V) each distinct sample's cycles on core
    (r[v], c[v]). A table (`compiler.table`) gives both from its lookups."""
    height, width = cores
    times, index = run_times(rows, distinct)
    total = passes_total(sums(times))
    if total.shape != (len(rows), height, width):
        total = np.broadcast_to(total, (len(rows), height, width))
    total = total.reshape(len(rows), -1)
    busiest = total.argmax(axis=1)
    r, col = np.divmod(busiest, width)
    core = at(r, col).T                                                             # (V, distinct)
    charged = np.einsum("vu,vu->v", times, core)
    return core.take(index) * run_scale(total[np.arange(len(rows)), busiest], charged)[:, None]


def passes_total(pass_terms_) -> np.ndarray:
    """Forward + backward of each pass's max(work, link) (`pass_terms`): a core's cycles for a
    sample (`per_core_cycles`), or of a run from each pass's work and link summed over it
    (`run_cycles`)."""
    return sum(np.maximum(work, link) for work, link in pass_terms_)


def run_scale(busiest: np.ndarray, charged: np.ndarray) -> np.ndarray:
    """The factor each sample's per-sample cycles on the run's busiest core are scaled by, so
    that they add up to that core's run (`run_cycles`); 1 where they add up to nothing."""
    return np.divide(busiest, charged, out=np.ones_like(busiest), where=charged > 0)


_RUN_TIMES: dict = {}


def run_times(rows: np.ndarray, distinct: int) -> tuple[np.ndarray, np.ndarray]:
    """(V, distinct) how many times each run (a row of `rows`) takes each distinct sample, and
    (V, S) each sample's flat index into a (V, distinct) array; kept for read-only `rows` (the
    kinds' cached `Counts.rows`), which come back every step."""
    key = (id(rows), distinct)
    hit = _RUN_TIMES.get(key)
    if hit is not None and hit[0] is rows:
        return hit[1]
    index = rows + distinct * np.arange(len(rows))[:, None]
    times = np.bincount(index.ravel(), minlength=len(rows) * distinct) \
        .reshape(len(rows), distinct).astype(np.float64)
    if not rows.flags.writeable:
        if len(_RUN_TIMES) > 256:
            _RUN_TIMES.clear()
        times.flags.writeable = index.flags.writeable = False
        _RUN_TIMES[key] = (rows, (times, index))
    return times, index


def _compact(term) -> np.ndarray:
    """`term` as a 4-D float64 array in its own broadcast shape (size 1 where it does not vary)."""
    t = np.asarray(term, dtype=np.float64)
    return t.reshape((1,) * (4 - t.ndim) + t.shape)


def _run_sum(times: np.ndarray, t: np.ndarray, calls: int) -> np.ndarray:
    """(V, rows or 1, cols or 1) term `t` (compact) of every core, summed over the calls and
    over each run, which takes distinct sample u `times[v, u]` times."""
    if t.shape[0] == 1:
        summed = times.sum(axis=1)[:, None] * t.reshape(1, -1)
    else:
        summed = times @ t.reshape(t.shape[0], -1)
    summed = summed.reshape((len(times),) + t.shape[1:]).sum(axis=1)
    return summed * calls if t.shape[1] == 1 else summed


def _at_cores(t: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(distinct or 1, calls or 1, V) term `t` (compact) at core (r[v], c[v]) of each run."""
    return t[:, :, r if t.shape[2] > 1 else 0 * r, c if t.shape[3] > 1 else 0 * c]


def _summed_calls(term, shape: tuple[int, ...]) -> np.ndarray:
    """(distinct, rows * cols) `term` of every core, summed over the calls."""
    total = np.broadcast_to(term, shape)
    total = total[:, 0] if shape[1] == 1 else total.sum(axis=1)
    return total.reshape(shape[0], -1)


def _busiest(term, shape: tuple[int, ...]) -> np.ndarray:
    """(samples,) the busiest core's `term` summed over the calls."""
    return _summed_calls(term, shape).max(axis=1)


def split(c: Components, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(samples,) cycles if only the cores' work, or only the links, limited the kernel: the
    busiest core's forward + backward work, and its forward + backward link time."""
    def busiest(term):
        return _busiest(term, shape)
    return (busiest(c.fwd_work + c.bwd_work),
            busiest(c.fwd_link + c.bwd_link))


def fill_cycles(c: Components, pass_: str, shape: tuple[int, ...], rows: int, cols: int,
                target) -> np.ndarray:
    """(samples,) the cycles a run of pass "fwd" or "bwd" takes beyond its samples' busiest
    cores, once a run, if sample u is the last: the first wavelet crosses the region and the
    last result leaves it (`Target.hop_cycles` times rows + cols - 1: along the row, down the
    chain, onto the edge), and what the busiest core sends only once its last sample's work is
    done (its drain, at most that work: the second stage of a two-stage pipeline, S max(a, b)
    + min(a, b)). Read off the fabric model (`simulator.fabric.check`), which the analytic
    model matches within 10% with it (`bench/fabric_check.py`)."""
    work = getattr(c, f"{pass_}_work")
    drain = np.minimum(getattr(c, f"{pass_}_drain"), work)
    return _busiest(drain, shape) + crossing_cycles(rows, cols, target)


def crossing_cycles(rows: int, cols: int, target) -> float:
    """Cycles a wavelet takes to cross a rows x cols region, along a row and down a column
    (`Target.hop_cycles` a hop): the latency a sample's first wavelet meets in each region of
    the pipeline, forward and back (the fabric model's whole step, `simulator.fabric.pipeline`)."""
    return target.hop_cycles * (rows + cols - 1)


# ------------------------------------------------------------------------------ the update

def update_flops(optimizer) -> int:
    if optimizer.kind == "sgd":
        return UPDATE_FLOPS["sgd_momentum" if optimizer.momentum else "sgd"]
    return UPDATE_FLOPS[optimizer.kind]


def allreduce_share(values, replicas: int):
    """Values each replica sends in a ring all-reduce of `values` across `replicas` (reduce-scatter
    then all-gather: 2 (r-1)/r of them, Patarasuk & Yuan 2009)."""
    return 2 * (replicas - 1) / replicas * values


def update_cycles(weights, mapping, target, optimizer):
    """Per core (rows, cols), or one number for `weights` held by every core: the in-place
    update of the weights each core holds, once per step, plus the gradient all-reduce across
    replicas, a ring per row of cores (2 (r-1)/r of each core's tile, Patarasuk & Yuan 2009)
    whose boundary link carries the tiles of the row's `cols` cores one after another, and
    the latency of a chunk's chain around it: 2 (r-1) hops of `cols` links each to its twin
    (the fabric model's ring, `simulator.fabric.allreduce`, which shows that latency where
    tiles are small; one lap, r cols, fell short of it by up to 40%).
    (`-(-v // 1)` is ceil for numbers and arrays alike.)"""
    cycles = -(-(weights * update_flops(optimizer) / target.simd) // 1)
    if mapping.replicas > 1:
        r = mapping.replicas
        row = weights * mapping.cols if np.ndim(weights) == 0 else weights.sum(axis=1, keepdims=True)
        ring = -(-allreduce_share(row, r) // 1) + 2 * (r - 1) * mapping.cols * target.hop_cycles
        cycles = cycles + (row > 0) * ring
    return cycles


def replica_busy(core: np.ndarray, rows: np.ndarray, mapping, update) -> np.ndarray:
    """(rows, cols * replicas) busy cycles of one step: sample s, whose per-core cycles are
    `core[rows[s]]` (`core` (distinct samples, rows, cols)), runs on replica s % replicas, and
    every replica updates its copy of the weights."""
    busy = np.empty((mapping.rows, mapping.width))
    flat = core.reshape(core.shape[0], -1)
    for q in range(mapping.replicas):
        times = np.bincount(rows[q::mapping.replicas], minlength=core.shape[0]).astype(flat.dtype)
        busy[:, q * mapping.cols:(q + 1) * mapping.cols] = \
            (times @ flat).reshape(mapping.rows, mapping.cols) + update
    return busy


# ---------------------------------------------------------------------------------- memory

def resident_bytes(weights, target, optimizer):
    """Bytes of `weights` held dense: the weight, its fp32 gradient accumulator and its fp32
    optimizer state."""
    return weights * (target.weight_bytes + FP32_BYTES * (1 + optimizer.state_slots))


def index_bytes(target) -> int:
    """Bytes of one index: as wide as a sparse wavelet's index (link_bits - value_bits)."""
    return (target.link_bits - target.value_bits) // 8


def compressed_weight_bytes(kept, tile_rows: int, tile_cols: int, target, optimizer):
    """Bytes of a masked weight tile stored compressed. Format: the kept weights' values,
    gradient accumulators and optimizer state (as dense), each kept weight with two indices
    (its column within the row, CSR order, for the forward pass; its position in column order,
    for the dX pass), plus one row pointer per tile row and one column pointer per tile column.
    Indices are `index_bytes` wide (16 bits: a tile of 48 KB has far fewer than 2**16 rows,
    columns or entries)."""
    idx = index_bytes(target)
    return resident_bytes(kept, target, optimizer) + kept * 2 * idx + (tile_rows + tile_cols) * idx
