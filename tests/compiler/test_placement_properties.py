"""Property-based checks (hypothesis) of compile_plan and place & route, for random graphs and
wafers (done-means 3):
- no two rectangles overlap, and every one is inside the fabric;
- every route is a connected Manhattan path through adjacent cores, from the centre of its
  producer's rectangle to the centre of its consumer's, shortest unless it goes around two
  regions that share columns (rows) (reduction routes stay inside their region, from one
  replica's centre to the next);
- no core's memory goes over SRAM;
- and when a model does not fit, compile_plan says so with WaferFitError / PlacementError and a
  message, never another exception.

Capturing a torch graph costs ~0.3 s, so a handful of MLP-like graphs (random widths, depth,
batch, loss, activations, tokens) are captured once per module; hypothesis varies the wafer, the
optimizer, the strategy, pinned mappings and the assumed density.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from compiler import Mapping, PlacementError, WaferFitError, compile_plan, wafer
from compiler.frontend import capture
from compiler.kernels import build_kernels
from compiler.optim_spec import OptimizerSpec
from compiler.passes import run_pipeline
from compiler.placement import Edge, occupancy, place, reduction_routes, refine
from compiler.routing import route
from tests.compiler.test_routing import around

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

REDUCTION = "gradient all-reduce"
OPTIMIZERS = [OptimizerSpec("sgd", lr=0.1), OptimizerSpec("sgd", lr=0.1, momentum=0.9),
              OptimizerSpec("adam", lr=1e-3), OptimizerSpec("adamw", lr=1e-3, weight_decay=0.01)]


class RandomMLP(nn.Module):
    def __init__(self, widths, act, p):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.act, self.drop = act, (nn.Dropout(p) if p else None)

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = {"relu": torch.relu, "tanh": torch.tanh, "none": lambda v: v}[self.act](x)
                if self.drop is not None:
                    x = self.drop(x)
        return x


def random_specs(seed=0, n=4):
    r = np.random.default_rng(seed)
    specs = [dict(widths=[16, 32, 8], batch=8, loss="ce", act="relu", p=0.3, tokens=0)]
    for _ in range(n):
        depth = int(r.integers(1, 5))
        widths = [int(w) for w in r.integers(4, 400, size=depth + 1)]
        specs.append(dict(widths=widths, batch=int(r.integers(1, 65)),
                          loss=["ce", "mse"][int(r.integers(2))],
                          act=["relu", "tanh", "none"][int(r.integers(3))],
                          p=[0.0, 0.2][int(r.integers(2))], tokens=0))
    specs.append(dict(widths=[32, 96, 32], batch=4, loss="mse", act="relu", p=0.0, tokens=8))
    # too big for the small wafers: exercises the refusals
    specs.append(dict(widths=[784, 1024, 10], batch=16, loss="ce", act="relu", p=0.0, tokens=0))
    return specs


def capture_spec(spec):
    torch.manual_seed(0)
    model = RandomMLP(spec["widths"], spec["act"], spec["p"])
    lead = (spec["batch"], spec["tokens"]) if spec["tokens"] else (spec["batch"],)
    x = torch.randn(*lead, spec["widths"][0])
    if spec["loss"] == "ce" and not spec["tokens"]:
        return capture(model, nn.CrossEntropyLoss(), (x, torch.randint(0, spec["widths"][-1], lead)),
                       method="aot")
    return capture(model, nn.MSELoss(), (x, torch.randn(*lead, spec["widths"][-1])), method="aot")


@pytest.fixture(scope="module")
def graphs():
    """(graph, kernels) of each random MLP, captured once."""
    out = []
    for spec in random_specs():
        g = capture_spec(spec)
        out.append((g, build_kernels(run_pipeline(g))[0]))
    return out


def unit_steps(path, rows, cols):
    """Expand a corner path into the cores it passes, checking each segment is axis-aligned and
    each step goes to an adjacent core inside the fabric."""
    cells = [tuple(path[0])]
    for (ra, ca), (rb, cb) in zip(path, path[1:]):
        assert ra == rb or ca == cb, f"diagonal segment {(ra, ca)} -> {(rb, cb)}"
        while cells[-1] != (rb, cb):
            r, c = cells[-1]
            cells.append((r + np.sign(rb - r), c + np.sign(cb - c)))
    for r, c in cells:
        assert 0 <= r < rows and 0 <= c < cols, f"core {(r, c)} outside the {rows} x {cols} fabric"
    for a, b in zip(cells, cells[1:]):
        assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1
    return cells


def check_plan(plan):
    t = plan.target
    names = [k.name for k in plan.kernels]
    assert [r.name for r in plan.rects] == names and set(plan.mapping) == set(names)
    grid = occupancy(plan.rects, t)                            # raises on overlap
    for r in plan.rects:
        m = plan.mapping[r.name]
        assert (r.height, r.width) == (m.rows, m.width)
        assert 0 <= r.row and r.row + r.height <= t.rows
        assert 0 <= r.col and r.col + r.width <= t.cols
    assert (grid > 0).sum() == sum(m.cores for m in plan.mapping.values()) <= t.cores
    for name, used in plan.memory_per_core().items():
        assert used <= t.sram_bytes, (name, used)
    for rt in plan.routes:
        cells = unit_steps(rt.path, t.rows, t.cols)
        assert len(cells) - 1 == rt.hops and rt.lanes >= 1
        src, dst = plan.rect[rt.edge.src], plan.rect[rt.edge.dst]
        if rt.edge.value.startswith(REDUCTION):
            assert rt.edge.src == rt.edge.dst and plan.mapping[rt.edge.src].replicas > 1
            assert all(src.row <= r < src.row + src.height and src.col <= c < src.col + src.width
                       for r, c in cells)
        else:                   # from inside the producer to inside the consumer, bands within the fabric
            inside = lambda p, x: x.row <= p[0] < x.row + x.height and x.col <= p[1] < x.col + x.width  # noqa: E731
            assert inside(cells[0], src) and inside(cells[-1], dst)
            assert all(0 <= lo < hi <= max(t.rows, t.cols) for lo, hi in rt.bands)
    est = plan.estimate()
    assert est["cycles"] > 0 and np.isfinite(est["cycles"])


@st.composite
def compile_inputs(draw, count):
    index = draw(st.integers(0, count - 1))
    target = wafer("classroom", rows=draw(st.integers(8, 48)), cols=draw(st.integers(8, 48)),
                   sram_bytes=draw(st.integers(16, 64)) * 1024)
    optimizer = draw(st.sampled_from(OPTIMIZERS))
    strategy = draw(st.sampled_from(["auto", "model", "data", "pin"]))
    density = draw(st.sampled_from([1.0, 0.5, 0.1]))
    return index, target, optimizer, strategy, density


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=compile_inputs(len(random_specs())), data=st.data())
def test_compiled_plans_are_valid(graphs, inputs, data):
    index, target, optimizer, strategy, density = inputs
    graph, kernels = graphs[index]
    mapping = strategy
    if strategy == "pin":
        k = data.draw(st.sampled_from([k for k in kernels if k.kind == "matmul"]))
        rows = data.draw(st.integers(1, min(k.nest.extent("i"), 12)))
        cols = data.draw(st.integers(1, min(k.nest.extent("j"), 12)))
        mapping = {k.name: Mapping(rows, cols, data.draw(st.integers(1, 3)))}
    try:
        plan = compile_plan(graph, target, optimizer, mapping=mapping, density=density)
    except (WaferFitError, PlacementError) as err:
        assert str(err).strip()
        event(f"refused: {type(err).__name__}")
        return
    event(f"compiled ({strategy})")
    check_plan(plan)
    if strategy == "model":
        assert all(m.replicas == 1 for m in plan.mapping.values())
    if strategy == "data":
        assert len({m.replicas for m in plan.mapping.values()}) == 1
    if strategy == "pin":
        (name, m), = mapping.items()
        assert plan.mapping[name] == m and plan.pinned == (name,)


def test_some_random_inputs_compile_and_some_do_not(graphs):
    """The property test above covers both outcomes: spot-check each on fixed inputs."""
    graph, _ = graphs[0]
    check_plan(compile_plan(graph, wafer("classroom", rows=8, cols=8, sram_bytes=16 * 1024),
                            OPTIMIZERS[0]))
    with pytest.raises(WaferFitError, match="1,024"):
        compile_plan(graphs[1][0], wafer("classroom", rows=8, cols=8, sram_bytes=1024),
                     OPTIMIZERS[2])


# ---------------------------------------------------------------- placement alone (fast)


@st.composite
def layouts(draw):
    rows, cols = draw(st.integers(4, 48)), draw(st.integers(4, 48))
    n = draw(st.integers(1, 10))
    maps = {}
    for i in range(n):
        rep = draw(st.integers(1, 3))
        maps[f"k{i}"] = Mapping(draw(st.integers(1, 12)), draw(st.integers(1, 8)), rep)
    return wafer("classroom", rows=rows, cols=cols), maps


@settings(max_examples=150, deadline=None)
@given(layout=layouts(), edges=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9),
                                                  st.integers(1, 5000)), max_size=15))
def test_place_refine_route_properties(layout, edges):
    target, maps = layout
    order = list(maps)
    try:
        rects = place(order, maps, target)
    except PlacementError as err:
        assert str(err).strip()
        return
    pairs = sorted({tuple(sorted((order[a % len(order)], order[b % len(order)])))
                    for a, b, _ in edges if a % len(order) != b % len(order)})
    rects = refine(rects, pairs, target)
    grid = occupancy(rects, target)
    assert (grid > 0).sum() == sum(m.cores for m in maps.values())
    where = {r.name: r for r in rects}
    for r in rects:
        assert (r.height, r.width) == (maps[r.name].rows, maps[r.name].width)
        assert 0 <= r.row <= target.rows - r.height and 0 <= r.col <= target.cols - r.width
    es = [Edge(order[a % len(order)], order[b % len(order)], f"v{i}", w)
          for i, (a, b, w) in enumerate(edges) if a % len(order) != b % len(order)]
    for rt in route(es, rects):
        cells = unit_steps(rt.path, target.rows, target.cols)
        src, dst = where[rt.edge.src], where[rt.edge.dst]
        inside = lambda p, x: x.row <= p[0] < x.row + x.height and x.col <= p[1] < x.col + x.width  # noqa: E731
        assert inside(cells[0], src) and inside(cells[-1], dst)
        # shortest, or around two regions that share columns (rows): then exactly that detour
        assert len(cells) - 1 == rt.hops <= (abs(src.center[0] - dst.center[0])
                                             + abs(src.center[1] - dst.center[1])
                                             + 2 * around(rt, src, dst))

    class K:                                   # the fields reduction_routes reads
        def __init__(self, name):
            self.name, self.kind, self.param_numel = name, "generated", 1000
    for rt in reduction_routes([K(n) for n in order], maps, rects, target):
        rect = where[rt.edge.src]
        for r, c in unit_steps(rt.path, target.rows, target.cols):
            assert rect.row <= r < rect.row + rect.height and rect.col <= c < rect.col + rect.width
