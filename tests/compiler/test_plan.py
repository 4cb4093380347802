"""compiler.plan: compile_plan end to end on a small MLP, the Plan's views, and JSON round trips."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compiler import Mapping, Plan, PlacementError, WaferFitError, compile_plan, wafer
from compiler.frontend import capture, optimizer_spec
from compiler.placement import link_loads, occupancy
from compiler.plan import kernel_edges
from compiler.serialize import plan_from_dict, plan_to_dict
from compiler.target import ConfigError

T = wafer("classroom")


@pytest.fixture(scope="module")
def case(make_mlp):
    """(model, captured graph) of a slightly larger MLP than the shared one."""
    model, loss_fn, example = make_mlp(d_in=16, hidden=32, d_out=8, batch=8)
    return model, capture(model, loss_fn, example, method="aot")


@pytest.fixture(scope="module")
def sgd(case):
    model, _ = case
    return optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))


@pytest.fixture(scope="module")
def adam(case):
    model, _ = case
    return optimizer_spec(torch.optim.Adam(model.parameters(), lr=1e-3))


@pytest.fixture(scope="module")
def plan(case, sgd):
    return compile_plan(case[1], T, sgd)


@pytest.fixture(scope="module")
def pinned_plan(case, sgd):
    return compile_plan(case[1], T, sgd, mapping={"fc*": Mapping(4, 4)})


def test_kernels(plan):
    assert [k.name for k in plan.kernels] == ["fc1", "fc2", "log_softmax"]
    assert set(plan.mapping) == set(plan.kernel) == set(plan.rect) == {"fc1", "fc2", "log_softmax"}
    assert plan.pinned == ()


def test_every_kernel_fits_sram(plan):
    mem = plan.memory_per_core()
    assert set(mem) == set(plan.kernel)
    for name, used in mem.items():
        assert 0 < used <= plan.target.sram_bytes, name


def test_rects_match_mappings_without_overlap(plan):
    grid = occupancy(plan.rects, plan.target)      # raises on overlap
    assert (grid > 0).sum() == sum(m.cores for m in plan.mapping.values())
    for r in plan.rects:
        m = plan.mapping[r.name]
        assert (r.height, r.width) == (m.rows, m.width)
        assert r.row + r.height <= plan.target.rows and r.col + r.width <= plan.target.cols
    assert [r.name for r in plan.rects] == [k.name for k in plan.kernels]


def test_mappings_within_extents(plan):
    for k in plan.kernels:
        m = plan.mapping[k.name]
        if k.kind == "matmul":
            assert m.rows <= k.nest.extent("i") and m.cols <= k.nest.extent("j")


def test_graph_is_lowered_and_fully_assigned(plan, case):
    g = plan.graph
    assert not any(op.op == "aten.native_dropout.default" for op in g.ops)
    assert len(g.masks) == 1
    assert set(dict(plan.kernel_of)) == {op.name for op in g.ops}
    assert set(dict(plan.kernel_of).values()) == set(plan.kernel)
    # the captured graph itself is untouched
    assert any(op.op == "aten.native_dropout.default" for op in case[1].ops)


def test_summary_mentions_every_kernel(plan):
    text = plan.summary()
    for k in plan.kernels:
        line = next(ln for ln in text.splitlines() if ln.startswith(k.name))
        m = plan.mapping[k.name]
        assert k.kind in line and str(k.nest) in line
        assert line.split()[2:5] == [str(m.rows), str(m.cols), str(m.replicas)]
    assert plan.target.name in text and plan.optimizer.kind in text


def test_estimate(plan):
    est = plan.estimate()
    assert est["cycles"] > 0
    assert set(est["per_sample_cycles"]) == set(plan.kernel)
    assert all(c > 0 for c in est["per_sample_cycles"].values())
    samples = plan.kernels[0].samples
    assert est["samples_per_s"] == pytest.approx(samples * plan.target.clock_hz / est["cycles"])
    # the step takes at least the slowest stage once per sample
    assert est["cycles"] >= samples * max(est["per_sample_cycles"].values())


def test_lower_density_is_not_slower(case, sgd):
    dense = compile_plan(case[1], T, sgd, density=1.0).estimate()["cycles"]
    sparse = compile_plan(case[1], T, sgd, density=0.25).estimate()["cycles"]
    assert sparse <= dense


def test_hops(plan):
    hops = plan.hops()
    assert hops.shape == (len(plan.kernels),)
    assert hops[0] == 0 and (hops >= 0).all()
    slow = plan.__class__(**{**{f: getattr(plan, f) for f in plan.__dataclass_fields__},
                             "target": wafer("classroom", hop_cycles=3)})
    np.testing.assert_allclose(slow.hops(), 3 * hops)


def test_routes_connect_kernels(plan):
    names = set(plan.kernel)
    assert plan.routes
    for rt in plan.routes:
        assert rt.edge.src in names and rt.edge.dst in names and rt.edge.src != rt.edge.dst
        assert rt.edge.wavelets > 0
    pairs = {(rt.edge.src, rt.edge.dst) for rt in plan.routes}
    assert ("fc1", "fc2") in pairs and ("fc2", "log_softmax") in pairs
    h, v = plan.link_loads()
    assert h.sum() + v.sum() == pytest.approx(sum(rt.edge.wavelets * rt.hops for rt in plan.routes))


def test_kernel_edges_cross_kernels(plan):
    kernel_of = dict(plan.kernel_of)
    edges = kernel_edges(plan.graph, kernel_of, plan.target)
    for e in edges:
        assert kernel_of[plan.graph.producer[e.value].name] == e.src
        assert e.src != e.dst
        numel = plan.graph.type_of[e.value].numel
        assert e.wavelets * plan.target.dense_values_per_wavelet >= numel


def test_compile_is_deterministic(case, sgd, plan):
    assert compile_plan(case[1], T, sgd) == plan


def test_format_ir(plan):
    text = plan.format_ir()
    for k in plan.kernels:
        assert f"# {k.name}" in text


# ---------------------------------------------------------------- pinning


def test_pinned_mapping(pinned_plan):
    assert pinned_plan.mapping["fc1"] == Mapping(4, 4)
    assert pinned_plan.mapping["fc2"] == Mapping(4, 4)
    assert set(pinned_plan.pinned) == {"fc1", "fc2"}
    assert "log_softmax" not in pinned_plan.pinned
    marked = [ln.split()[0] for ln in pinned_plan.summary().splitlines() if "*" in ln]
    assert sorted(marked) == ["fc1", "fc2"]


def test_pinned_replicas(case, sgd):
    p = compile_plan(case[1], T, sgd, mapping={"fc1": Mapping(2, 2, replicas=3)})
    assert p.mapping["fc1"] == Mapping(2, 2, 3)
    assert (p.rect["fc1"].height, p.rect["fc1"].width) == (2, 6)
    occupancy(p.rects, p.target)


def test_replicas_cut_per_sample_time(case, sgd):
    one = compile_plan(case[1], T, sgd, mapping={"fc1": Mapping(2, 2)}).estimate()
    three = compile_plan(case[1], T, sgd, mapping={"fc1": Mapping(2, 2, 3)}).estimate()
    assert three["per_sample_cycles"]["fc1"] < one["per_sample_cycles"]["fc1"]


def test_pinning_an_unknown_kernel_is_refused(case, sgd):
    with pytest.raises(ConfigError, match="conv"):
        compile_plan(case[1], T, sgd, mapping={"conv*": Mapping(1, 1)})


def test_pinned_mapping_too_small_for_memory(case, adam):
    tiny = wafer("classroom", sram_bytes=1024)
    with pytest.raises(WaferFitError) as err:
        compile_plan(case[1], tiny, adam, mapping={"fc1": Mapping(1, 1)})
    assert "fc1" in str(err.value) and "1,024" in str(err.value)


def test_pinned_mapping_too_wide_to_place(case, sgd):
    with pytest.raises(PlacementError):
        compile_plan(case[1], T, sgd, mapping={"fc1": Mapping(4, 4, replicas=10)})


def test_model_too_big_for_the_wafer(case, adam):
    small = wafer("classroom", rows=2, cols=2, sram_bytes=2048)
    with pytest.raises(WaferFitError) as err:
        compile_plan(case[1], small, adam)
    assert "2,048" in str(err.value)


def test_adam_needs_more_memory_than_sgd(case, sgd, adam):
    pin = {"fc*": Mapping(2, 2)}
    m_sgd = compile_plan(case[1], T, sgd, mapping=pin).memory_per_core()
    m_adam = compile_plan(case[1], T, adam, mapping=pin).memory_per_core()
    assert m_adam["fc1"] > m_sgd["fc1"] and m_adam["fc2"] > m_sgd["fc2"]


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize("which", ["plan", "pinned_plan"])
def test_json_round_trip(request, which):
    p = request.getfixturevalue(which)
    text = p.to_json()
    assert isinstance(json.loads(text), dict)
    q = Plan.from_json(text)
    assert q == p
    assert q.summary() == p.summary()
    assert q.estimate() == p.estimate()
    assert q.to_json() == text
    assert dict(q.kernel_of) == dict(p.kernel_of)
    assert q.graph.type_of == p.graph.type_of


def test_json_round_trip_adam(case, adam):
    p = compile_plan(case[1], T, adam, density=0.5)
    q = Plan.from_json(p.to_json())
    assert q == p and q.optimizer.kind == "adam" and q.density == 0.5


def test_unknown_plan_format_is_refused(plan):
    d = plan_to_dict(plan)
    d["format"] = 999
    with pytest.raises(ValueError, match="999"):
        plan_from_dict(d)


def test_json_with_numpy_int_mapping(case, sgd):
    p = compile_plan(case[1], T, sgd, mapping={"fc*": Mapping(np.int64(4), np.int64(4))})
    assert Plan.from_json(p.to_json()).mapping["fc1"] == Mapping(4, 4)
