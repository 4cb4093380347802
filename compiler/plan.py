"""The Plan: everything the compiler decided, as data (serializable to JSON and back).

`compile_plan` is the straight pipeline after capture:
passes -> kernels -> mappings (sized by work, memory-checked) -> placement -> routes -> estimate.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from . import cost
from .cost import Mapping
from .ir import Graph, Op, Ref, TensorType, format_graph, verify
from .kernels import Access, Kernel, LoopNest, build_kernels
from .mapping import (WaferFitError, in_flight, minimal_mapping, pinned_mappings, share_work)
from .optim_spec import OptimizerSpec
from .passes import run_pipeline
from .pipeline import step_cycles
from .placement import Edge, PlacementError, Rect, Route, link_loads, place, route
from .target import Target

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Plan:
    target: Target
    graph: Graph
    kernels: tuple[Kernel, ...]
    kernel_of: tuple[tuple[str, str], ...]     # op name -> kernel name
    optimizer: OptimizerSpec
    mappings: tuple[tuple[str, Mapping], ...]
    pinned: tuple[str, ...]
    rects: tuple[Rect, ...]
    routes: tuple[Route, ...]
    density: float = 1.0
    meta: tuple[tuple[str, object], ...] = field(default=())

    @cached_property
    def mapping(self) -> dict[str, Mapping]:
        return dict(self.mappings)

    @cached_property
    def kernel(self) -> dict[str, Kernel]:
        return {k.name: k for k in self.kernels}

    @cached_property
    def rect(self) -> dict[str, Rect]:
        return {r.name: r for r in self.rects}

    def hops(self) -> np.ndarray:
        """Hops from the previous region's centre to each region's centre (pipeline order)."""
        centers = [self.rect[k.name].center for k in self.kernels]
        dist = [0] + [abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(centers, centers[1:])]
        return np.asarray(dist, dtype=np.float64) * self.target.hop_cycles

    def memory_per_core(self) -> dict[str, int]:
        n = len(self.kernels)
        return {k.name: cost.memory_per_core(k, self.mapping[k.name], self.target, self.optimizer,
                                             in_flight(i, n, k.samples))
                for i, k in enumerate(self.kernels)}

    def estimate(self) -> dict:
        """Static estimate of one step from the assumed density (no data)."""
        per_sample = np.array([cost.estimate_sample_cycles(k, self.mapping[k.name], self.target,
                                                           self.density) / self.mapping[k.name].replicas
                               for k in self.kernels])
        updates = np.array([cost.update_cycles(k, self.mapping[k.name], self.target, self.optimizer)
                            for k in self.kernels])
        samples = self.kernels[0].samples if self.kernels else 0
        stage = np.repeat(per_sample[:, None], samples, axis=1)
        hops = self.hops()
        cycles = step_cycles(stage, hops, float(hops.sum()), updates)
        return {"cycles": cycles, "per_sample_cycles": dict(zip([k.name for k in self.kernels],
                                                                per_sample.tolist())),
                "samples_per_s": samples * self.target.clock_hz / cycles if cycles else 0.0,
                "density": self.density}

    def summary(self) -> str:
        mem = self.memory_per_core()
        lines = [f"Plan for {self.target.name} ({self.target.rows} x {self.target.cols} cores, "
                 f"{self.target.sram_bytes:,} B SRAM/core), optimizer {self.optimizer.kind}",
                 f"{'kernel':<16}{'kind':<10}{'rows':>5}{'cols':>5}{'repl':>5}{'at':>10}"
                 f"{'mem/core B':>12}  loop nest"]
        for k in self.kernels:
            m, r = self.mapping[k.name], self.rect[k.name]
            pin = "*" if k.name in self.pinned else " "
            lines.append(f"{k.name:<16}{k.kind:<10}{m.rows:>5}{m.cols:>5}{m.replicas:>5}"
                         f"{f'({r.row},{r.col})':>10}{mem[k.name]:>12,}{pin} {k.nest}")
        est = self.estimate()
        lines.append(f"static estimate: {est['cycles']:,.0f} cycles/step, "
                     f"{est['samples_per_s']:,.0f} samples/s at density {self.density}")
        return "\n".join(lines)

    def format_ir(self) -> str:
        return format_graph(self.graph, dict(self.kernel_of))

    def link_loads(self):
        return link_loads(self.routes, self.target)

    def to_json(self) -> str:
        from .serialize import plan_to_dict
        return json.dumps(plan_to_dict(self))

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        from .serialize import plan_from_dict
        return plan_from_dict(json.loads(text))


def kernel_edges(graph: Graph, kernel_of: dict[str, str], target: Target) -> list[Edge]:
    """One edge per value that crosses from its producer's kernel to a consumer's kernel."""
    edges = {}
    for op in graph.ops:
        for ref in op.refs():
            src = graph.producer.get(ref)
            if src is None or kernel_of[src.name] == kernel_of[op.name]:
                continue
            key = (kernel_of[src.name], kernel_of[op.name], ref)
            numel = graph.type_of[ref].numel
            edges[key] = Edge(*key, wavelets=-(-numel // target.dense_values_per_wavelet))
    return list(edges.values())


def compile_plan(graph: Graph, target: Target, optimizer: OptimizerSpec, mapping="auto",
                 density: float = 1.0) -> Plan:
    graph = verify(run_pipeline(graph))
    kernels, kernel_of = build_kernels(graph)
    pinned = pinned_mappings(kernels, mapping)
    n = len(kernels)
    minimal = {k.name: minimal_mapping(k, i, n, target, optimizer) for i, k in enumerate(kernels)}
    _check_pinned_memory(kernels, pinned, target, optimizer)
    need = sum(pinned.get(k.name, minimal[k.name]).cores for k in kernels)
    if need > target.cores:
        total = sum(k.param_numel for k in kernels) * (target.weight_bytes + 4 * (1 + optimizer.state_slots))
        raise WaferFitError(f"the model needs at least {need:,} cores (about {total:,} bytes of "
                            f"weights and optimizer state at <= {target.sram_bytes:,} bytes per "
                            f"core) but the {target.name} wafer has {target.cores:,}")
    order = [k.name for k in kernels]
    budget = target.cores
    while True:
        mappings = _fit_memory(share_work(kernels, minimal, pinned, budget, target), minimal,
                               kernels, target, optimizer)
        try:
            rects = place(order, mappings, target)
            break
        except PlacementError:
            if budget <= need:
                raise
            budget = max(need, int(budget * 0.85))
    routes = route(kernel_edges(graph, kernel_of, target), rects)
    return Plan(target, graph, kernels, tuple(kernel_of.items()), optimizer,
                tuple(mappings.items()), tuple(pinned), rects, routes, density)


def _fit_memory(mappings: dict, minimal: dict, kernels, target, optimizer) -> dict:
    """A grown rectangle of another shape can stash more per core; fall back to the minimum."""
    out = dict(mappings)
    for i, k in enumerate(kernels):
        if cost.memory_per_core(k, out[k.name], target, optimizer,
                                in_flight(i, len(kernels), k.samples)) > target.sram_bytes:
            out[k.name] = minimal[k.name]
    return out


def _check_pinned_memory(kernels, pinned, target, optimizer) -> None:
    for i, k in enumerate(kernels):
        if k.name in pinned:
            need = cost.memory_per_core(k, pinned[k.name], target, optimizer,
                                        in_flight(i, len(kernels), k.samples))
            if need > target.sram_bytes:
                m = pinned[k.name]
                raise WaferFitError(f"pinned Mapping({m.rows}, {m.cols}) for kernel {k.name!r} "
                                    f"needs {need:,} bytes per core but a core has "
                                    f"{target.sram_bytes:,}; pin more cores")
