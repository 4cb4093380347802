"""The Plan: everything the compiler decided, as data (serializable to JSON and back).

`compile_plan` is the straight pipeline after capture:
passes -> kernels -> mappings (sized by work, memory-checked) -> placement -> routes -> estimate,
then the best finalist's congestion relieved (`compiler.relieve`) where that lowers its estimate.
The Plan also carries what its estimate assumed: harvesting on or off, the densities of the
streamed operands, and the precision of the values on the fabric.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import compile_report, cost, estimate as _estimate, serialize
from .errors import ConfigError, WaferFitError
from .ir import Graph, format_graph, verify
from .kernels import Kernel, build_kernels, kind_of
from .mapping import Mapping, in_flight, pinned_mappings
from .options import (FINE_PER_DIM, PER_DIM, Option, boundary_cycles, cached_options,
                      minimal_mapping)
from .packing import search_and_pack
from .search import STRATEGIES, finalist_key
from .optim_spec import OptimizerSpec
from .passes import run_pipeline
from .links import link_loads, route_links
from .schedule import Streaming
from .steps import sequence_length
from .placement import (Edge, Rect, Route, is_sample_route, reduction_routes, refine,
                        wire_length)
from .relieve import relieve
from .routing import Router
from .target import Target

PLAN_FORMAT = 3


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
    densities: tuple[tuple[str, tuple[float, float]], ...] = field(default=())
    harvest: bool = True                       # the estimate assumes zeros are skipped
    precision: str = "fp16"                    # the values on the fabric (`Target.precision`)

    @cached_property
    def mapping(self) -> dict[str, Mapping]:
        return dict(self.mappings)

    @cached_property
    def kernel(self) -> dict[str, Kernel]:
        return {k.name: k for k in self.kernels}

    @cached_property
    def rect(self) -> dict[str, Rect]:
        return {r.name: r for r in self.rects}

    @cached_property
    def streaming(self) -> Streaming:
        """How samples move through the pipeline (`schedule.Streaming`): a sequence model's
        token by token, each kernel passing tokens on unless its kind needs whole samples."""
        tokens = sequence_length(self.graph)
        if tokens <= 1:
            return Streaming()
        return Streaming(tokens, tuple(not kind_of(k).passes_tokens_on(self.graph, k, tokens)
                                       for k in self.kernels))

    @cached_property
    def sample_routes(self) -> tuple[Route, ...]:
        """The routes samples travel (not the gradient all-reduce), in plan order."""
        return tuple(rt for rt in self.routes if is_sample_route(rt))

    @cached_property
    def links(self):
        """The sample routes as rectangles of directed links (`links.RouteLinks`), for congestion."""
        return route_links(self.sample_routes, [k.name for k in self.kernels], self.target)

    def hops(self) -> np.ndarray:
        """Hops from the previous region's centre to each region's centre (pipeline order)."""
        centers = [self.rect[k.name].center for k in self.kernels]
        dist = [0] + [abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(centers, centers[1:])]
        return np.asarray(dist, dtype=np.float64) * self.target.hop_cycles

    def latency(self) -> np.ndarray:
        """Cycles a sample's first wavelet takes to reach each region and cross it (pipeline
        order): the `hops` from the previous region's centre and the region's own crossing
        (`cost.crossing_cycles`), which the fabric model's whole step shows the pipeline fills
        with (`simulator.fabric.pipeline`; `bench/fabric_check.py`, the whole-step row). The
        schedule charges it on the way in and on the gradient's way back."""
        cross = [cost.crossing_cycles(self.mapping[k.name].rows, self.mapping[k.name].cols,
                                      self.target) for k in self.kernels]
        return self.hops() + np.asarray(cross, dtype=np.float64)

    def memory_per_core(self) -> dict[str, int]:
        n = len(self.kernels)
        return {k.name: _estimate.memory_per_core(k, self.mapping[k.name], self.target,
                                                  self.optimizer, in_flight(i, n, k.samples))
                for i, k in enumerate(self.kernels)}

    def density_of(self, name: str):
        """The (x, dY) densities the estimate assumes for kernel `name`."""
        return dict(self.densities).get(name, (self.density, self.density))

    def congestion_array(self, shares=None) -> np.ndarray:
        """(variants, kernels) per-sample cycles the busiest link on each kernel's routes needs
        (1 wavelet/cycle), with each route at `shares` of its rows (None: all)."""
        samples = self.kernels[0].samples if self.kernels else 1
        return self.links.congestion(shares, samples)

    def congestion(self) -> dict[str, float]:
        """Per kernel: per-sample cycles the busiest link on its routes needs (1 wavelet/cycle)."""
        return dict(zip((k.name for k in self.kernels), self.congestion_array()[0].tolist()))

    def estimate(self) -> dict:
        """Static estimate of one step from the assumed densities (no data)."""
        return _estimate.estimate(self)

    def summary(self) -> str:
        """The compile report (after Cerebras'): estimated rates, PEs, and a per-kernel table."""
        return compile_report.format_report(self)

    def format_ir(self) -> str:
        return format_graph(self.graph, dict(self.kernel_of))

    def link_loads(self):
        return link_loads(self.routes, self.target)

    def to_json(self) -> str:
        return json.dumps(serialize.plan_to_dict(self, PLAN_FORMAT))

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        fields = serialize.plan_fields(json.loads(text), PLAN_FORMAT)
        return cls(**fields)


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
            edges[key] = Edge(*key, wavelets=int(cost.dense_wavelets(numel, target)))
    return list(edges.values())


def compile_plan(graph: Graph, target: Target, optimizer: OptimizerSpec, mapping="auto",
                 density: float = 1.0, densities: dict | None = None, harvest: bool = True,
                 ) -> Plan:
    """passes -> kernels -> options -> exact min-bottleneck search -> placement -> routes.

    `mapping` is a strategy ("auto" | "model" | "data") or a dict of kernel-name glob ->
    Mapping that pins those kernels (the rest are searched with "auto"). `densities` maps a
    kernel name to the assumed (x, dY) densities (e.g. calibrated on the example batch);
    other kernels assume `density`. With `harvest` off zeros cost like any value, so every
    kernel is sized for dense work whatever the densities.
    """
    if not isinstance(mapping, (str, dict)):
        raise ConfigError(f"mapping must be 'auto', 'model', 'data' or a dict of kernel-name glob "
                          f"-> wb.Mapping, got {mapping!r}")
    graph = verify(run_pipeline(graph))
    kernels, kernel_of = build_kernels(graph)
    strategy = mapping if isinstance(mapping, str) else "auto"
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown mapping strategy {mapping!r}; allowed: {', '.join(STRATEGIES)} "
                          "or a dict of kernel-name glob -> wb.Mapping")
    pinned = pinned_mappings(kernels, mapping if isinstance(mapping, dict) else "auto")
    _check_pinned_memory(kernels, pinned, target, optimizer)
    densities = {k.name: (densities or {}).get(k.name, (density, density)) for k in kernels}
    samples = kernels[0].samples
    edges = kernel_edges(graph, kernel_of, target)
    pairs = sorted({tuple(sorted((e.src, e.dst))) for e in edges})
    traffic = pair_traffic(edges)
    finalists = _finalists(kernels, lambda per_dim, first_only: candidate_lists(
        kernels, target, optimizer, pinned, densities, strategy, harvest,
        boundary_wavelets(edges, samples), per_dim, first_only), target, samples)

    def build(choice, rects, relaxed, router=None):
        """The Plan of a finalist, with the sample routes `router` laid (None: no routes)."""
        mappings = {name: opt.mapping for name, opt in choice.options.items()}
        routes = (router.routes if router is not None else ()) \
            + reduction_routes(kernels, mappings, rects, target)
        meta = (("strategy", strategy), ("search_bottleneck", choice.bottleneck),
                ("relaxations", relaxed), ("wire_length", wire_length(rects, pairs)))
        return Plan(target, graph, kernels, tuple(kernel_of.items()), optimizer,
                    tuple((k.name, mappings[k.name]) for k in kernels), tuple(pinned), rects,
                    routes, density, meta=meta,
                    densities=tuple((n, tuple(d)) for n, d in densities.items()),
                    harvest=harvest, precision=target.precision)

    def routed(choice, rects, relaxed):
        router = Router(edges, rects, (target.rows, target.cols))
        return build(choice, rects, relaxed, router), router

    # The search minimizes the bottleneck stage; congestion, hops and pipeline fill depend on the
    # placement, which refinement changes a lot, so every distinct finalist is refined and then
    # scored by the full estimate (`search.finalist_key`; then the earlier finalist). Refinement
    # weighs each pair of kernels by the wavelets it exchanges, so a small region that takes
    # whole activations sits by its heavy partners, not at the centre of its light ones.
    refined, seen = [], set()
    for choice, rects, relaxed in finalists:
        key = (tuple((n, o.mapping) for n, o in choice.options.items()), rects)
        if key not in seen:
            seen.add(key)
            refined.append((choice, refine(rects, pairs, target, weights=traffic), relaxed))
    plan, router, best = _best_routed(refined, build, routed)
    return _relieved(plan, router, refined[best], traffic, build)


def _best_routed(finalists: list[tuple], build, routed) -> tuple[Plan, Router, int]:
    """The finalist `search.finalist_key` ranks first (then the earlier), each routed only if it
    can still win: its estimate without routes is a lower bound on its routed one (congestion
    only ever lengthens a stage, `schedule.stage_times`), so finalists are routed in the order of
    that bound, and one whose bound is above the best routed cycles so far is left unrouted.
    Returns the plan, its `routing.Router` and the finalist's index."""
    if len(finalists) == 1:
        return *routed(*finalists[0]), 0
    bounds = [build(*f).estimate()["cycles"] for f in finalists]
    best_key, best = None, None
    for i in sorted(range(len(finalists)), key=bounds.__getitem__):
        if best_key is not None and bounds[i] > best_key[0][0]:
            break
        plan, router = routed(*finalists[i])
        key = (finalist_key(plan.estimate()), i)
        if best_key is None or key < best_key:
            best_key, best = key, (plan, router, i)
    return best


def _relieved(plan: Plan, router: Router, finalist: tuple, traffic: dict, build) -> Plan:
    """`plan` with the culprits of its congestion moved (`relieve.relieve`), if that lowers its
    estimated step (`search.finalist_key`); else `plan`. Each kernel's own stage time is its
    stage without routes."""
    own = build(*finalist).estimate()["per_sample_cycles"]
    shares = _estimate.assumed_route_shares(plan)
    share = 1.0 if shares is None or not len(shares) else float(shares[0])
    moved = relieve(router, own, traffic, plan.kernels[0].samples, share)
    if moved is router:
        return plan
    choice, rects, relaxed = finalist
    better = build(choice, tuple(moved.where[r.name] for r in rects), relaxed, moved)
    return better if finalist_key(better.estimate()) < finalist_key(plan.estimate()) else plan


def replica_counts(samples: int, target: Target, strategy: str) -> tuple[int, ...]:
    if strategy == "model":
        return (1,)
    counts, r = [], 1
    while r <= min(samples, target.cols):
        counts.append(r)
        r *= 2
    return tuple(counts)


def pair_traffic(edges: list[Edge]) -> dict[tuple[str, str], float]:
    """(kernel, kernel) in name order -> the wavelets its edges carry both ways per step: how
    hard the pair pulls its kernels together in `placement.refine`."""
    traffic: dict[tuple[str, str], float] = {}
    for e in edges:
        pair = tuple(sorted((e.src, e.dst)))
        traffic[pair] = traffic.get(pair, 0) + e.wavelets
    return traffic


def boundary_wavelets(edges: list[Edge], samples: int) -> dict[str, float]:
    """Kernel -> wavelets per sample its routes bring in or take out, whichever is more."""
    into, out = {}, {}
    for e in edges:
        into[e.dst] = into.get(e.dst, 0) + e.wavelets
        out[e.src] = out.get(e.src, 0) + e.wavelets
    return {k: max(into.get(k, 0), out.get(k, 0)) / max(samples, 1) for k in set(into) | set(out)}


def candidate_lists(kernels, target, optimizer, pinned, densities, strategy,
                    harvest: bool = True, boundary: dict | None = None,
                    per_dim: int = PER_DIM, first_only: bool = False) -> list[dict]:
    """The option lists to search: "model" one replica each; "data" one list per whole-network
    replica count (each built for that count, so its Pareto front is exact); "auto" a list where
    each kernel picks its own count, plus the "model" and "data" lists, best of all kept.
    `per_dim`: unroll counts tried per dimension (`options.kernel_options`); `first_only`:
    the first list alone ("auto": the one where each kernel picks its count)."""
    samples = kernels[0].samples

    def lists(replicas):
        return option_lists(kernels, target, optimizer, pinned, densities, replicas, harvest,
                            boundary, per_dim)
    first = lists(replica_counts(samples, target, "auto") if strategy == "auto" else (1,))
    if first_only or strategy == "model":
        return [first]
    data = [lists((r,)) for r in replica_counts(samples, target, "data")[1:]]
    return [first] + data if strategy == "data" else [first, lists((1,))] + data


def option_lists(kernels, target, optimizer, pinned, densities, replicas: tuple[int, ...],
                 harvest: bool = True, boundary: dict | None = None,
                 per_dim: int = PER_DIM) -> dict:
    """Each kernel's valid options; a pinned kernel has exactly its pinned mapping. `boundary`:
    kernel -> the wavelets per sample its routes carry in or out (`boundary_wavelets`)."""
    lists, n = {}, len(kernels)
    boundary = boundary or {}
    for i, k in enumerate(kernels):
        flight = in_flight(i, n, k.samples)
        if k.name in pinned:
            m = pinned[k.name]
            opt = Option(m, _estimate.sample_cycles(k, m.replica, target, densities[k.name], harvest),
                         _estimate.update_cycles(k, m, target, optimizer),
                         _estimate.memory_per_core(k, m, target, optimizer, flight),
                         boundary_cycles(boundary.get(k.name, 0.0), m))
            lists[k.name] = [opt]
            continue
        opts = cached_options(k, target, optimizer, flight, tuple(densities[k.name]), replicas,
                              harvest, boundary.get(k.name, 0.0), per_dim)
        if not opts and replicas == (1,):
            minimal_mapping(k, i, n, target, optimizer)   # raises WaferFitError with the figures
            raise WaferFitError(f"kernel {k.name!r} has no mapping that fits the {target.name} wafer")
        lists[k.name] = opts
    return lists


def _finalists(kernels, candidates, target, samples) -> list[tuple]:
    """`_search_and_place` on the lists `candidates(per_dim, first_only)` at `options.PER_DIM`
    unroll counts a dimension; where nothing packs at the least bottleneck (every finalist
    relaxed, or none packed), the first of the lists (the strategy's most general: "auto"'s
    own replica count per kernel) at `FINE_PER_DIM` too: more shapes to pack before the
    target is relaxed. The finalists of both, for the full estimate to choose among."""
    try:
        coarse = _search_and_place(kernels, candidates(PER_DIM, False), target, samples)
    except WaferFitError as err:
        coarse, failure = [], err
    if coarse and not all(relaxed for _, _, relaxed in coarse):
        return coarse
    try:
        return coarse + _search_and_place(kernels, candidates(FINE_PER_DIM, True), target, samples)
    except WaferFitError:
        if coarse:
            return coarse
        raise failure from None


def _search_and_place(kernels, candidates: list[dict], target, samples):
    """The shared search and packer (`packing.search_and_pack`, as the ISPD contest solver uses)
    per candidate list: exact search for T*, pack there (greedy placement and the shape-choosing
    shelf packer), else relax the target. Returns (choice, rects, relaxations) for every packing
    of every list that packs; the caller keeps the best by the full estimate."""
    order = [k.name for k in kernels]
    finalists = []
    for lists in candidates:
        if any(not v for v in lists.values()):
            continue
        placed = search_and_pack(lists, target, samples, order)
        if placed is not None and placed.packings is not None:
            finalists += [(p.choice(), p.rects, placed.tries - 1) for p in placed.packings]
    if not finalists:
        need = min((sum(min(o.area for o in opts) for opts in lists.values())
                    for lists in candidates if all(lists.values())), default=None)
        if need is None:
            bare = next(n for n, opts in candidates[0].items() if not opts)
            raise WaferFitError(f"kernel {bare!r} has no mapping that fits the {target.name} wafer")
        raise WaferFitError(f"the model needs at least {need:,} cores at <= {target.sram_bytes:,} "
                            f"bytes per core, and its kernels could not be packed on the "
                            f"{target.name} wafer ({target.rows} x {target.cols} = "
                            f"{target.cores:,} cores)")
    return finalists


def _check_pinned_memory(kernels, pinned, target, optimizer) -> None:
    for i, k in enumerate(kernels):
        if k.name in pinned and (pinned[k.name].rows > target.rows or pinned[k.name].width > target.cols):
            m = pinned[k.name]
            raise WaferFitError(f"pinned Mapping({m.rows}, {m.cols}, replicas={m.replicas}) for kernel "
                                f"{k.name!r} needs a {m.rows} x {m.width} region, larger than the "
                                f"{target.name} fabric ({target.rows} x {target.cols})")
        if k.name in pinned:
            need = _estimate.memory_per_core(k, pinned[k.name], target, optimizer,
                                             in_flight(i, len(kernels), k.samples))
            if need > target.sram_bytes:
                m = pinned[k.name]
                raise WaferFitError(f"pinned Mapping({m.rows}, {m.cols}) for kernel {k.name!r} "
                                    f"needs {need:,} bytes per core but a core has "
                                    f"{target.sram_bytes:,}; pin more cores")
