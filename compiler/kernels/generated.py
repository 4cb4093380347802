"""The generated kernel kind: any other op group, compiled from an element-wise loop nest.

Hot Chips 2020 ("Cerebras software"): kernels the library has no hand-optimized version of are
generated from their loop nest by unrolling it across the fabric. Here the nest is
`for b, e: out[b, e] = f(in[b, e])` with e the elements of a sample (the widest value of the
group, per sample), unrolled over all rows x cols cores of the kernel's rectangle; each point
costs `flops_per_point` element operations (one per full-width op of the group). Forward and
backward each stream the core's tile once and do its element work once, so per sample and core,
with t = ceil(e / cores) elements in w = ceil(t / v) dense wavelets of v values:
  compute = (t // v) ceil(v flops / simd) + ceil((t % v) flops / simd)   (a task a wavelet,
            each rounded up to the SIMD width on its own)
  received = w     link in = cols w     link out = rows w
per pass: a row's tiles all enter over its west edge and a column's results all leave over its
south edge, so the busiest link carries a row's (column's) tiles, not one core's (the fabric
model, `simulator.fabric.elementwise`). Generated kernels harvest no zeros.

Counts: the elements a sample computes. With `running` markers (dynamic depth, real tokens) a
sample costs the share of the kernel's elements its ops' positions make up
(`simulator.measure.positions`); a shared block's layer norm is called once per recurrent step.
"""
from __future__ import annotations

import functools

import math

import numpy as np

from .. import cost
from ..passes import VIEW_OPS, is_elementwise
from ..steps import axis_kind
from .base import Access, Counts, Kernel, KindDefaults, LoopNest


def generated_nest(samples: int, elements: int, flops: int) -> LoopNest:
    return LoopNest(dims=(("b", samples), ("e", elements)),
                    accesses=(Access("in", ("b", "e"), "stream_in"),
                              Access("out", ("b", "e"), "stream_out")),
                    row_dim="e", col_dim="e", flops_per_point=max(1, flops))


def generated_kernel(name: str = "gen", elements: int = 64, samples: int = 4, flops: int = 4) -> Kernel:
    """An element-wise kernel of `elements` per sample, built by hand (no graph)."""
    return Kernel(name, "generated", (f"{name}_op",), (), generated_nest(samples, elements, flops),
                  (("out", f"{name}_out"),), samples, 0)


def _counted(graph, ops: list) -> list:
    """(op, output) the nest counts: the ops with an output as wide as the group's widest.
    Scalar bookkeeping (label counts, the mean's divisor) is not per-element work."""
    work = [o for o in ops if o.op not in VIEW_OPS]
    outs = [(o, out) for o in work for out in o.outputs if out in graph.type_of]
    widest = max((graph.type_of[out].numel for _, out in outs), default=0)
    seen, counted = set(), []
    for op, out in outs:
        if graph.type_of[out].numel == widest and op.name not in seen:
            seen.add(op.name)
            counted.append((op, out))
    return counted


def build(graph, name: str, ops: list, context) -> Kernel:
    """One call per marked span its forward work lies in (a shared block's layer norm is called
    once per recurrent step), streaming the first full-width output of each; one call without
    markers."""
    samples = context.samples
    counted = _counted(graph, ops)
    widest = graph.type_of[counted[0][1]].numel if counted else 1
    work = [o for o in ops if o.op not in VIEW_OPS]
    main = next((o for o in work if not is_elementwise(o)), work[0] if work else ops[0])
    per_span = {}
    for op, _ in counted:
        if op.name in context.spans:
            per_span.setdefault(context.spans[op.name], op.outputs[0])
    streams = tuple(("out", v) for v in per_span.values()) if len(per_span) > 1 else \
        (("out", main.outputs[0]),)
    params = context.params_of(name, ops)
    nest = generated_nest(samples, max(1, math.ceil(widest / max(samples, 1))), len(counted))
    return Kernel(name, "generated", tuple(o.name for o in ops), params, nest, streams, samples,
                  context.param_numel(params))


class GeneratedKind(KindDefaults):
    name = "generated"
    priority = 100     # build_kernels asks the kinds by priority
    origin = "generated from its loop nest"
    per_call_governors = False         # one governor per counted op, not per call
    build = staticmethod(build)

    @staticmethod
    def passes_tokens_on(graph, kernel: Kernel, tokens: int) -> bool:
        """Element-wise work on a value with a token axis streams token by token (a layer norm
        normalizes each token on its own), as does work on a value with one row per position
        (a position embedding is added to each token as it passes); on a pooled or per-sample
        value it waits."""
        value = graph.type_of.get(kernel.streams[0][1]) if kernel.streams else None
        return value is not None and \
            axis_kind(value.shape, kernel.samples, tokens) in ("tokens", "positions")

    @staticmethod
    def weights_per_core(kernel: Kernel, mapping, tiles=None) -> int:
        return math.ceil(kernel.param_numel / (mapping.rows * mapping.cols))

    def memory_per_core(self, kernel: Kernel, mapping, target, optimizer, in_flight: int,
                        kept: int | None = None) -> int:
        """Its parameters (a norm's scale and shift) with gradients and optimizer state, and
        each in-flight sample's tile of elements, stashed for the backward."""
        stash = math.ceil(kernel.nest.extent("e") / (mapping.rows * mapping.cols))
        resident = cost.resident_bytes(self.weights_per_core(kernel, mapping), target, optimizer)
        return int(resident + (in_flight * stash + stash) * target.activation_bytes)

    @staticmethod
    def dense_macs(kernel: Kernel) -> int:
        """Element operations are not multiply-accumulates: a generated kernel adds none to the
        MACs behind Compute Utilization (its element work is in its cycles)."""
        return 0

    @staticmethod
    def assumed_counts(kernel: Kernel, mapping, target, density, harvest: bool) -> Counts:
        """Every element of one sample."""
        return Counts(np.full(1, float(kernel.nest.extent("e"))), np.zeros((1, 1), dtype=np.intp))

    @staticmethod
    def measured_counts(kernel: Kernel, mapping, env: dict, runs) -> Counts:
        """The elements each sample computes: every one without markers (one distinct sample),
        else the share its positions make up, per set of positions the variants charge."""
        elements, variants = kernel.nest.extent("e"), runs.variants
        shares = runs.fraction(kernel)
        if shares is None:
            return _every_element(elements, len(variants), kernel.samples)
        order = list(dict.fromkeys(v.positions for v in variants))
        values = np.concatenate([np.ceil(elements * np.asarray(shares[p])) for p in order])
        rows = np.stack([order.index(v.positions) * kernel.samples + np.arange(kernel.samples)
                         for v in variants])
        return Counts(values, rows)

    @staticmethod
    def components(kernel: Kernel, elements, mapping, target) -> cost.Components:
        per_core = np.ceil(np.asarray(elements, dtype=np.float64) / (mapping.rows * mapping.cols))
        per_core = per_core[:, None, None, None]                     # (U, 1, 1, 1)
        v, flops = target.dense_values_per_wavelet, kernel.nest.flops_per_point
        compute = (per_core // v) * np.ceil(v * flops / target.simd) + \
            np.ceil(per_core % v * flops / target.simd)
        wavelets = cost.dense_wavelets(per_core, target)
        link_in, link_out = mapping.cols * wavelets, mapping.rows * wavelets
        return cost.Components(compute, link_in, link_out, compute, link_in, link_out,
                               np.zeros(len(per_core)), fwd_recv=wavelets, bwd_recv=wavelets,
                               **cost.core_terms(target))

    @staticmethod
    def governed(graph, kernel: Kernel, mask_shape) -> list:
        """Per counted op: its own marker, when its output holds the mask's positions."""
        ops = [graph.producer[n] for n in kernel.ops if n in graph.producer]
        return [(op.name, axis_kind(graph.type_of[out].shape, *mask_shape))
                for op, out in _counted(graph, ops)]


@functools.lru_cache(maxsize=256)
def _every_element(elements: int, variants: int, samples: int) -> Counts:
    """The counts of a step without markers: the same object every step, so the measurement
    reuses its evaluation (`simulator.measure.step.measure_kernel`)."""
    values, rows = np.full(1, float(elements)), np.zeros((variants, samples), dtype=np.intp)
    values.flags.writeable = rows.flags.writeable = False
    return Counts(values, rows)


GENERATED = KIND = GeneratedKind()
