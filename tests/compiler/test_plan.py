"""compiler.plan: compile_plan end to end on a small MLP, the Plan's views, and JSON round trips;
the mapping search inside it (strategies, the seed's kernel-size table, irregular widths),
routes and the compile report, and the static estimate against the simulator's measurement.

Tests marked xfail(strict=True) pin down bugs found in compiler/ and simulator/ (the reason
names the file and line); they fail loudly (XPASS) once the bug is fixed.
"""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

from compiler import Mapping, Plan, PlacementError, WaferFitError, compile_plan, estimate, wafer
from compiler.compile_report import kernel_table
from compiler.frontend import capture, optimizer_spec
from compiler.kernels import build_kernels, kind_of
from compiler.mapping import in_flight
from compiler.optim_spec import OptimizerSpec
from compiler.options import kernel_options, pareto
from compiler.passes import run_pipeline
from compiler.placement import Rect, occupancy, wire_length
from compiler.plan import _search_and_place, candidate_lists, kernel_edges, option_lists, replica_counts
from compiler.search import min_bottleneck
from compiler.errors import ConfigError

import wsebench as wb   # the public API, for the checks against the simulator

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


def kernel_line(text: str, name: str) -> str:
    return next(ln for ln in text.splitlines() if ln.split() and ln.split()[0] == name)


def test_summary_mentions_every_kernel(plan):
    """The per-kernel table: kind, rows x cols x replicas, cycles per sample and memory per core
    as the estimate and the cost model give them, and the link load in and out."""
    text = plan.summary()
    for row in kernel_table(plan):
        fields = kernel_line(text, row["name"]).split()
        m = plan.mapping[row["name"]]
        assert fields[1] == plan.kernel[row["name"]].kind
        assert fields[2:7] == [str(m.rows), "x", str(m.cols), "x", str(m.replicas)]
        assert float(fields[8]) == pytest.approx(row["cycles_per_sample"], abs=0.05)
        assert int(fields[9].replace(",", "")) == plan.memory_per_core()[row["name"]]
        assert [int(f.replace(",", "")) for f in fields[10:12]] == [row["link_in"], row["link_out"]]
    for key in ("Samples/s (estimated)", "Compute Samples/s", "Transmission Samples/s",
                "Active PEs", "Compute Utilization", "wire length", "most-loaded link"):
        assert key in text
    assert plan.target.name in text and plan.optimizer.kind in text


def test_kernel_table_link_loads_sum_the_edges(plan):
    table = {row["name"]: row for row in kernel_table(plan)}
    edges = kernel_edges(plan.graph, dict(plan.kernel_of), plan.target)
    for name in plan.kernel:
        assert table[name]["link_out"] == sum(e.wavelets for e in edges if e.src == name)
        assert table[name]["link_in"] == sum(e.wavelets for e in edges if e.dst == name)


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
    """The same plan is no slower at a lower density, and the exact search finds a bottleneck
    no worse (the final pick also weighs hops and fill, so whole plans may differ)."""
    dense_plan = compile_plan(case[1], T, sgd, density=1.0)
    same = compile_plan(case[1], T, sgd, density=0.25,
                        mapping={k: m for k, m in dense_plan.mapping.items()})
    assert same.estimate()["cycles"] <= dense_plan.estimate()["cycles"]
    sparse_plan = compile_plan(case[1], T, sgd, density=0.25)
    assert dict(sparse_plan.meta)["search_bottleneck"] <= dict(dense_plan.meta)["search_bottleneck"]


def test_hops(plan):
    hops = plan.hops()
    assert hops.shape == (len(plan.kernels),)
    assert hops[0] == 0 and (hops >= 0).all()
    slow = plan.__class__(**{**{f: getattr(plan, f) for f in plan.__dataclass_fields__},
                             "target": wafer("classroom", hop_cycles=3)})
    np.testing.assert_allclose(slow.hops(), 3 * hops)


from compiler.placement import REDUCTION  # noqa: E402


def test_routes_connect_kernels(plan):
    names = set(plan.kernel)
    assert plan.routes
    sample = [rt for rt in plan.routes if not rt.edge.value.startswith(REDUCTION)]
    reduce = [rt for rt in plan.routes if rt.edge.value.startswith(REDUCTION)]
    for rt in sample:                      # producer -> consumer edges between two kernels
        assert rt.edge.src in names and rt.edge.dst in names and rt.edge.src != rt.edge.dst
        assert rt.edge.wavelets > 0 and rt.lanes >= 1
    for rt in reduce:                      # replicas of one kernel reduce their gradients
        assert rt.edge.src == rt.edge.dst and plan.mapping[rt.edge.src].replicas > 1
    pairs = {(rt.edge.src, rt.edge.dst) for rt in sample}
    assert ("fc1", "fc2") in pairs and ("fc2", "log_softmax") in pairs
    edges = kernel_edges(plan.graph, dict(plan.kernel_of), plan.target)
    assert [rt.edge for rt in sample] == edges
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
    text = pinned_plan.summary()
    marked = [k.name for k in pinned_plan.kernels if "*" in kernel_line(text, k.name)]
    assert marked == ["fc1", "fc2"]
    assert "* pinned" in text                      # the legend says what the mark means


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
    """4 x 4 x 10 replicas is 40 columns on a 32-column fabric: the search has no packing."""
    with pytest.raises((PlacementError, WaferFitError)) as err:
        compile_plan(case[1], T, sgd, mapping={"fc1": Mapping(4, 4, replicas=10)})
    assert "classroom" in str(err.value) and "32" in str(err.value)


def test_pinned_mapping_too_wide_names_the_kernel(case, sgd):
    with pytest.raises((PlacementError, WaferFitError), match="fc1"):
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
    d = json.loads(plan.to_json())
    d["format"] = 999
    with pytest.raises(ValueError, match="999"):
        Plan.from_json(json.dumps(d))


def test_plan_carries_what_the_estimate_assumed(case, sgd):
    p = compile_plan(case[1], T, sgd, density=0.5)
    assert p.harvest and p.precision == T.precision == "fp16"
    off = compile_plan(case[1], T, sgd, density=0.5, harvest=False)
    assert not off.harvest
    assert "harvesting off" in off.summary() and "harvesting on, density 0.5" in p.summary()
    q = Plan.from_json(off.to_json())
    assert q == off and not q.harvest
    # harvesting off: every value costs, so the assumed density changes nothing
    dense = compile_plan(case[1], T, sgd, density=1.0, harvest=False)
    assert off.estimate()["cycles"] == dense.estimate()["cycles"]
    assert off.mappings == dense.mappings


def test_a_format_1_plan_reads_as_harvesting_on(plan):
    d = json.loads(plan.to_json())
    d["format"] = 1
    del d["harvest"], d["precision"]
    q = Plan.from_json(json.dumps(d))
    assert q.harvest and q.precision == plan.target.precision and q == plan


def test_json_with_numpy_int_mapping(case, sgd):
    p = compile_plan(case[1], T, sgd, mapping={"fc*": Mapping(np.int64(4), np.int64(4))})
    assert Plan.from_json(p.to_json()).mapping["fc1"] == Mapping(4, 4)


# ---------------------------------------------------------------- the search inside compile_plan

BIG_SRAM = wafer("classroom", sram_bytes=1 << 20)   # a 784 x 256 layer fits 3 x 3 cores


class Stack(nn.Module):
    """Linear layers `layers.0 ...` with an optional ReLU between them."""

    def __init__(self, widths, relu=True):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.relu = relu

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.relu and i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def captured(model, loss_fn, x, y):
    return capture(model, loss_fn, (x, y), method="aot"), \
        optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.fixture(scope="module")
def linear784():
    """One 784 -> 256 Linear named fc1, MSE loss (the seed's kernel-size table)."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(784, 256)))
    return captured(model, nn.MSELoss(), torch.randn(16, 784), torch.randn(16, 256))


@pytest.fixture(scope="module")
def irregular():
    """Widths that vary 3x or more from layer to layer."""
    torch.manual_seed(0)
    model = Stack([64, 512, 96, 384, 10])
    return captured(model, nn.CrossEntropyLoss(), torch.randn(32, 64), torch.randint(0, 10, (32,)))


@pytest.fixture(scope="module")
def big_batch():
    """A small MLP at batch 256: the once-per-step gradient all-reduce is spread over many
    samples, so data parallelism pays."""
    torch.manual_seed(0)
    model = Stack([16, 32, 8])
    graph, opt = captured(model, nn.CrossEntropyLoss(), torch.randn(256, 16), torch.randint(0, 8, (256,)))
    return graph, opt, T


@pytest.fixture(scope="module")
def mse_stack():
    torch.manual_seed(0)
    model = Stack([64, 128, 128, 32], relu=False)
    return captured(model, nn.MSELoss(), torch.randn(32, 64), torch.randn(32, 32))


def test_kernel_size_table(linear784):
    """Hot Chips 2020: 3x3 cores are ~4x slower than 6x6 on 1/4 of the area, 12x12 ~4x faster on
    4x the area -- in the compute-bound regime, from the cost model, not from a figure."""
    graph, opt = linear784
    per_sample = {}
    for side in (3, 6, 12):
        p = compile_plan(graph, BIG_SRAM, opt, mapping={"fc1": Mapping(side, side)})
        assert p.mapping["fc1"] == Mapping(side, side) and p.pinned == ("fc1",)
        est = p.estimate()
        own = estimate.sample_cycles(p.kernel["fc1"], Mapping(side, side), BIG_SRAM)
        # nothing (congestion, a slower neighbour) masks the kernel's own time
        assert est["per_sample_cycles"]["fc1"] == own
        assert est["compute_samples_per_s"] < est["transmission_samples_per_s"]   # compute-bound
        line = kernel_line(p.summary(), "fc1").split()
        assert float(line[8]) == pytest.approx(own, abs=0.05)           # the report shows it
        per_sample[side] = own
    assert per_sample[3] / per_sample[6] == pytest.approx(4, rel=0.15)
    assert per_sample[6] / per_sample[12] == pytest.approx(4, rel=0.15)


def test_kernel_size_table_in_the_simulator():
    """The same ratios from the simulator's per-kernel report (measured from dense data)."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 784), torch.randn(16, 256)
    per_sample = {}
    for side in (3, 6, 12):
        model = nn.Sequential(OrderedDict(fc1=nn.Linear(784, 256)))
        s = wb.compile(model, nn.MSELoss(), (x, y), torch.optim.SGD(model.parameters(), lr=0.01),
                       wafer=BIG_SRAM, mapping={"fc1": wb.Mapping(side, side)}, backend="numpy")
        s.step(x, y)
        row = next(k for k in s.report().kernels if k["name"] == "fc1")
        assert (row["rows"], row["cols"]) == (side, side)
        per_sample[side] = row["per_sample_cycles"]
    assert per_sample[3] / per_sample[6] == pytest.approx(4, rel=0.15)
    assert per_sample[6] / per_sample[12] == pytest.approx(4, rel=0.15)


def strategy_cases(case, sgd, irregular, mse_stack):
    return [(case[1], sgd, T), (irregular[0], irregular[1], T), (mse_stack[0], mse_stack[1], T),
            (mse_stack[0], mse_stack[1], wafer("classroom", rows=64, cols=64))]


def test_model_strategy_keeps_one_replica(case, sgd, irregular, mse_stack):
    for graph, opt, target in strategy_cases(case, sgd, irregular, mse_stack):
        p = compile_plan(graph, target, opt, mapping="model")
        assert dict(p.meta)["strategy"] == "model"
        assert all(m.replicas == 1 for m in p.mapping.values())
        assert not [rt for rt in p.routes if rt.edge.value.startswith(REDUCTION)]


def test_data_strategy_replicates_the_whole_network(case, sgd, irregular, mse_stack, big_batch):
    counts = []
    for graph, opt, target in strategy_cases(case, sgd, irregular, mse_stack) + [big_batch]:
        p = compile_plan(graph, target, opt, mapping="data")
        assert dict(p.meta)["strategy"] == "data"
        reps = {m.replicas for m in p.mapping.values()}
        assert len(reps) == 1
        counts.append(reps.pop())
    assert max(counts) > 1                           # data parallelism is chosen where it pays


def search_bottleneck(graph, opt, target, strategy):
    return dict(compile_plan(graph, target, opt, mapping=strategy).meta)["search_bottleneck"]


def test_search_bottleneck_is_the_chosen_options_slowest_stage(case, sgd, irregular):
    for graph, opt, p in ((case[1], sgd, compile_plan(case[1], T, sgd)),
                          (irregular[0], irregular[1], compile_plan(irregular[0], T, irregular[1]))):
        samples = p.kernels[0].samples
        stages = [estimate.sample_cycles(k, Mapping(p.mapping[k.name].rows, p.mapping[k.name].cols),
                                              T) / p.mapping[k.name].replicas
                  + estimate.update_cycles(k, p.mapping[k.name], T, opt) / samples for k in p.kernels]
        assert dict(p.meta)["search_bottleneck"] == pytest.approx(max(stages))


def test_auto_option_space_beats_model_and_data(case, sgd, irregular, mse_stack):
    """Before packing, "auto" searches a superset of both strategies' options, so its exact
    minimum bottleneck is never worse than theirs."""
    for graph, opt, target in strategy_cases(case, sgd, irregular, mse_stack):
        kernels, _ = build_kernels(run_pipeline(graph))
        samples = kernels[0].samples
        dens = {k.name: (1.0, 1.0) for k in kernels}
        best = {s: min_bottleneck(option_lists(kernels, target, opt, {}, dens,
                                               replica_counts(samples, target, s)),
                                  target.cores, samples)
                for s in ("auto", "model")}
        restricted = [option_lists(kernels, target, opt, {}, dens, (r,))
                      for r in replica_counts(samples, target, "data")]
        data = [min_bottleneck(lists, target.cores, samples) for lists in restricted
                if all(lists.values())]           # a replica count some kernel cannot take
        data = min((c.bottleneck for c in data if c is not None), default=float("inf"))
        assert best["auto"].bottleneck <= best["model"].bottleneck
        assert best["auto"].bottleneck <= data


def test_auto_estimate_is_at_least_as_fast_as_model_and_data(case, sgd, irregular, mse_stack):
    for graph, opt, target in strategy_cases(case, sgd, irregular, mse_stack):
        rate = {s: compile_plan(graph, target, opt, mapping=s).estimate()["samples_per_s"]
                for s in ("auto", "model", "data")}
        assert rate["auto"] >= 0.99 * max(rate["model"], rate["data"]), rate


def test_unknown_strategy_is_refused(case, sgd):
    with pytest.raises(ConfigError, match="pipeline") as err:
        compile_plan(case[1], T, sgd, mapping="pipeline")
    for allowed in ("auto", "model", "data"):
        assert allowed in str(err.value)


@pytest.mark.parametrize("bad", [42, ["fc1"]])
def test_mapping_of_the_wrong_type_is_refused(case, sgd, bad):
    with pytest.raises(ConfigError):
        compile_plan(case[1], T, sgd, mapping=bad)


# ---------------------------------------------------------------- irregular widths


def stage_ratio(times: dict) -> float:
    return max(times.values()) / min(times.values())


def test_irregular_mlp_is_balanced(irregular):
    """Widths 64-512-96-384-10: the search sizes each layer for its work, so the per-sample
    stage times come out far closer than with every layer on the same 4 x 4 block, and the
    rectangles follow the layers' shapes (rows != cols)."""
    graph, opt = irregular
    auto = compile_plan(graph, T, opt)
    same = compile_plan(graph, T, opt, mapping={"layers.*": Mapping(4, 4)})
    matmuls = [k.name for k in auto.kernels if k.kind == "matmul"]
    assert len(matmuls) == 4
    t_auto = {n: auto.estimate()["per_sample_cycles"][n] for n in matmuls}
    t_same = {n: same.estimate()["per_sample_cycles"][n] for n in matmuls}
    assert stage_ratio(t_same) > 3                                 # the widths do vary
    assert stage_ratio(t_auto) < stage_ratio(t_same) / 3
    assert stage_ratio(t_auto) < 1.5                               # balanced
    assert stage_ratio(auto.estimate()["per_sample_cycles"]) < \
        stage_ratio(same.estimate()["per_sample_cycles"])          # all kernels, too
    assert auto.estimate()["samples_per_s"] > 5 * same.estimate()["samples_per_s"]
    assert any(auto.mapping[n].rows != auto.mapping[n].cols for n in matmuls)
    # the area follows the work: the widest layer gets more cores than the narrowest
    work = {k.name: kind_of(k).dense_macs(k) for k in auto.kernels if k.kind == "matmul"}
    assert auto.mapping[max(work, key=work.get)].cores > auto.mapping[min(work, key=work.get)].cores
    text = auto.summary()                                          # the report shows the balance
    for n in matmuls:
        assert float(kernel_line(text, n).split()[8]) == pytest.approx(t_auto[n], abs=0.05)


# ---------------------------------------------------------------- routes, reduction, report


def test_reduction_routes_for_replicated_kernels(case, sgd, mse_stack, big_batch):
    plans = [compile_plan(case[1], T, sgd, mapping={"fc1": Mapping(2, 2, 3)}),
             compile_plan(big_batch[0], big_batch[2], big_batch[1], mapping="data"),
             compile_plan(mse_stack[0], wafer("classroom", rows=64, cols=64), mse_stack[1], mapping="data")]
    replicated = 0
    for p in plans:
        reduce = [rt for rt in p.routes if rt.edge.value.startswith(REDUCTION)]
        for k in p.kernels:
            m = p.mapping[k.name]
            mine = [rt for rt in reduce if rt.edge.src == k.name]
            expected = m.replicas - 1 if k.param_numel else 0
            assert len(mine) == expected, (k.name, m)
            replicated += expected > 0
            rect = p.rect[k.name]
            for rt in mine:
                for (r, c) in rt.path:
                    assert rect.row <= r < rect.row + rect.height
                    assert rect.col <= c < rect.col + rect.width
        # the reduction's time counts in the step: the update grows with replicas
        for k in p.kernels:
            m = p.mapping[k.name]
            if m.replicas > 1 and k.param_numel:
                one = estimate.update_cycles(k, Mapping(m.rows, m.cols), p.target, p.optimizer)
                assert estimate.update_cycles(k, m, p.target, p.optimizer) > one
    assert replicated >= 3


def test_reduction_route_load_fits_the_time_charged_for_it(case, sgd):
    p = compile_plan(case[1], T, sgd, mapping={"fc1": Mapping(4, 4, 4)})
    reduce = [rt for rt in p.routes if rt.edge.value.startswith(REDUCTION)]
    assert reduce
    for rt in reduce:
        k, m = p.kernel[rt.edge.src], p.mapping[rt.edge.src]
        # a link moves one wavelet per cycle: its load is a lower bound on the all-reduce time
        assert rt.load <= estimate.update_cycles(k, m, p.target, p.optimizer)


def test_summary_reports_wire_length_and_busiest_link(plan, case, sgd):
    for p in (plan, compile_plan(case[1], T, sgd, mapping="data")):
        meta, text = dict(p.meta), p.summary()
        edges = kernel_edges(p.graph, dict(p.kernel_of), p.target)
        pairs = sorted({tuple(sorted((e.src, e.dst))) for e in edges})
        assert meta["wire_length"] == wire_length(p.rects, pairs) > 0
        h, v = p.link_loads()
        busiest = max(h.max(), v.max())
        assert busiest > 0
        assert f"wire length {meta['wire_length']:,} hops" in text
        assert f"most-loaded link {busiest:,.0f} wavelets/step" in text
        assert f"strategy {meta['strategy']}" in text


def test_json_round_trip_keeps_densities_and_lanes(case, sgd):
    p = compile_plan(case[1], T, sgd, mapping={"fc1": Mapping(2, 2, replicas=3)}, density=0.7,
                     densities={"fc1": (0.5, 0.25), "fc2": (1.0, 0.125)})
    assert dict(p.densities) == {"fc1": (0.5, 0.25), "fc2": (1.0, 0.125), "log_softmax": (0.7, 0.7)}
    assert any(rt.lanes > 1 for rt in p.routes)
    assert any(rt.edge.value.startswith(REDUCTION) for rt in p.routes)
    q = Plan.from_json(p.to_json())
    assert q == p
    assert q.densities == p.densities and [rt.lanes for rt in q.routes] == [rt.lanes for rt in p.routes]
    assert q.meta == p.meta and q.estimate() == p.estimate() and q.summary() == p.summary()
    assert q.congestion() == p.congestion()
    assert q.to_json() == p.to_json()


def test_densities_size_the_kernels(case, sgd):
    """A kernel assumed sparser gets a faster per-sample estimate at the same mapping."""
    pin = {"fc*": Mapping(2, 2)}
    dense = compile_plan(case[1], T, sgd, mapping=pin).estimate()["per_sample_cycles"]
    sparse = compile_plan(case[1], T, sgd, mapping=pin,
                          densities={"fc2": (0.25, 0.25)}).estimate()["per_sample_cycles"]
    assert sparse["fc2"] < dense["fc2"] and sparse["fc1"] == dense["fc1"]


# ---------------------------------------------------------------- estimate vs measurement


@pytest.mark.parametrize("mapping", ["auto", "model", "data"])
def test_estimate_matches_measurement_on_dense_data(mapping):
    """Identity activations and Gaussian data: nothing to harvest, so the compiler's static
    estimate and the simulator's measured step agree (done-means 6: within 10%)."""
    torch.manual_seed(0)
    model = Stack([64, 128, 96, 32], relu=False)
    x, y = torch.randn(32, 64), torch.randn(32, 32)
    s = wb.compile(model, nn.MSELoss(), (x, y), torch.optim.SGD(model.parameters(), lr=0.01),
                   wafer="classroom", mapping=mapping, backend="numpy")
    s.step(x, y)
    summary = s.report().summary
    assert summary["estimate_vs_measured"] == pytest.approx(1.0, rel=0.10)
    assert summary["estimate_step_cycles"] == pytest.approx(s.plan.estimate()["cycles"])
    assert summary["samples_per_s"] == pytest.approx(s.plan.estimate()["samples_per_s"], rel=0.10)


def test_data_strategy_searches_every_option_of_its_replica_count(case, sgd, irregular):
    for graph, opt in ((case[1], sgd), irregular):
        kernels, _ = build_kernels(run_pipeline(graph))
        samples = kernels[0].samples
        dens = {k.name: (1.0, 1.0) for k in kernels}
        for r in replica_counts(samples, T, "data"):
            got = candidate_lists(kernels, T, opt, {}, dens, "data")[replica_counts(samples, T, "data").index(r)]
            for i, k in enumerate(kernels):
                own = pareto(kernel_options(k, T, opt, in_flight(i, len(kernels), samples),
                                            replicas=(r,)), samples)
                assert got[k.name] == own, (k.name, r)


def test_estimate_matches_measurement_with_tokens():
    """Dense data with a token axis ([batch, seq, d], like a transformer's FFN): the same check."""
    torch.manual_seed(0)
    model = Stack([64, 96, 64], relu=False)
    x, y = torch.randn(8, 16, 64), torch.randn(8, 16, 64)
    s = wb.compile(model, nn.MSELoss(), (x, y), torch.optim.SGD(model.parameters(), lr=0.01),
                   wafer="classroom", mapping={"layers.*": wb.Mapping(4, 8)}, backend="numpy")
    s.step(x, y)
    assert s.report().summary["estimate_vs_measured"] == pytest.approx(1.0, rel=0.10)


def test_a_model_using_a_quarter_of_the_fabric_always_packs(make_matmul):
    """8 kernels with BERT-base's matmul shapes (seq 16) on a 128 x 128 fabric."""
    shapes = [(768, 2304), (2304, 768), (768, 3072), (3072, 768)]
    kernels = tuple(make_matmul(f"fc{i}", k=shapes[i % 4][0], n=shapes[i % 4][1], samples=8,
                                  tokens=16) for i in range(8))
    target = wafer("classroom", rows=128, cols=128)
    opt = OptimizerSpec("sgd", lr=0.1)
    lists = option_lists(kernels, target, opt, {}, {k.name: (1.0, 1.0) for k in kernels},
                         replica_counts(8, target, "auto"))
    assert sum(min(o.area for o in v) for v in lists.values()) < target.cores / 4
    finalists = _search_and_place(kernels, [lists], target, 8)
    choice, rects, _ = finalists[0]
    assert len(rects) == len(kernels)


def test_sequence_models_stream_tokens_and_attention_waits_for_the_sample(case):
    """A transformer's plan streams each sample token by token, its position embedding added
    to each token as it passes; its attention (every key before the first query) and its
    pooled head wait for whole samples; an MLP streams whole samples."""
    model = wb.models.transformer(vocab=12, d_model=8, heads=2, layers=1, ffn=16, max_len=6, seed=0)
    x, y = torch.randint(1, 12, (4, 6)), torch.randint(0, 2, (4,))
    graph = capture(model, nn.CrossEntropyLoss(), (x, y), method="aot")
    plan = compile_plan(graph, T, optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.1)))
    streaming = plan.streaming
    assert streaming.chunks == 6 and len(streaming.waits) == len(plan.kernels)
    waits = dict(zip((k.name for k in plan.kernels), streaming.waits))
    assert waits["layers.0.attn.sdpa"] and waits["head"]
    assert not waits["layers.0.attn.q"] and not waits["layers.0.ffn.fc1"] and not waits["layers.0.ln1"]
    assert not waits["pos"]
    model_mlp, graph_mlp = case
    mlp = compile_plan(graph_mlp, T, optimizer_spec(torch.optim.SGD(model_mlp.parameters(), lr=0.1)))
    assert mlp.streaming.chunks == 1


class _Finalist:
    """A finalist's plan for `_best_routed`: its cycles with and without routes, and whether
    its slowest stage is then congestion-bound."""

    def __init__(self, name, bound, routed, congested=False, log=None):
        self.name, self.bound, self.cycles, self.congested, self.log = name, bound, routed, congested, log

    def build(self, routed):
        if routed:
            self.log.append(self.name)
        cycles = self.cycles if routed else self.bound
        congestion = cycles if routed and self.congested else 0.0
        plan = type("P", (), {})()
        plan.name = self.name
        plan.estimate = lambda: {"cycles": cycles, "per_sample_cycles": {"k": 1.0},
                                 "congestion_cycles": {"k": congestion}}
        return plan


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1)])
def test_finalists_are_routed_only_while_they_can_win(order):
    """The finalist routing picks what routing every finalist and ranking them by
    `search.finalist_key` (then the earlier) picks, and routes none whose estimate without
    routes (a lower bound) is above the best routed cycles."""
    from compiler.plan import _best_routed
    from compiler.search import finalist_key
    log = []
    specs = [("a", 100.0, 130.0, True), ("b", 110.0, 120.0, False), ("c", 125.0, 150.0, False),
             ("d", 120.0, 120.0, True)]
    finalists = [_Finalist(*specs[i], log=log) for i in order]
    build = lambda f, rects, relaxed: f.build(False)  # noqa: E731
    routed = lambda f, rects, relaxed: (f.build(True), None)  # noqa: E731
    chosen, _, _ = _best_routed([(f, None, 0) for f in finalists], build, routed)
    every = [(finalist_key(f.build(True).estimate()), i) for i, f in enumerate(finalists)]
    assert chosen.name == finalists[min(every)[1]].name == "b"     # 120 and not congestion-bound
    routed = log[:len(log) - len(finalists)]
    assert "c" not in routed and sorted(routed) == ["a", "b", "d"]  # d's bound 120 can still tie


@pytest.mark.parametrize("moved_cycles,moved_congestion,kept", [
    (90.0, 0.0, "moved"), (110.0, 0.0, "plan"), (100.0, 100.0, "plan"), (100.0, 0.0, "moved")])
def test_a_relieved_placement_is_kept_only_when_its_estimate_is_better(
        monkeypatch, moved_cycles, moved_congestion, kept):
    """`_relieved` hands `relieve` each kernel's stage without routes and keeps the placement
    it returns only when the full estimate ranks it first (`search.finalist_key`: fewer
    cycles, then a slowest stage not set by congestion); a full tie keeps the plan."""
    import compiler.plan as plan_module

    def fake(name, cycles, congestion=0.0):
        plan = type("P", (), {})()
        plan.name, plan.harvest, plan.density = name, False, 1.0
        plan.kernels = [type("K", (), {"samples": 8})()]
        plan.estimate = lambda: {"cycles": cycles, "per_sample_cycles": {"k": 5.0},
                                 "congestion_cycles": {"k": congestion}}
        return plan
    seen = {}
    moved = type("R", (), {"where": {"k": Rect("k", 1, 1, 2, 2)}})()

    def relieve(router, own, traffic, samples, share):
        seen.update(own=own, samples=samples, share=share)
        return moved
    monkeypatch.setattr(plan_module, "relieve", relieve)
    built = []

    def build(choice, rects, relaxed, router=None):
        built.append((rects, router))
        return fake("moved", moved_cycles, moved_congestion) if router is moved \
            else fake("bare", 50.0)
    plan = fake("plan", 100.0, congestion=100.0)
    got = plan_module._relieved(plan, "router", ("choice", (Rect("k", 0, 0, 2, 2),), 0), {}, build)
    assert got.name == kept
    assert seen == {"own": {"k": 5.0}, "samples": 8, "share": 1.0}
    assert built == [((Rect("k", 0, 0, 2, 2),), None), ((Rect("k", 1, 1, 2, 2),), moved)]


def test_finer_option_lists_are_searched_only_when_nothing_packs_at_the_least_bottleneck(
        monkeypatch):
    """`_finalists`: the coarse lists' finalists when one packed at T*; else the fine lists'
    too; the fine lists alone when the coarse ones packed nowhere; the coarse failure when
    neither packs."""
    import compiler.plan as plan_module
    from compiler.options import FINE_PER_DIM, PER_DIM
    outcome: dict = {}

    def search_and_place(kernels, lists, target, samples):
        got = outcome[lists]
        if isinstance(got, Exception):
            raise got
        return got
    monkeypatch.setattr(plan_module, "_search_and_place", search_and_place)
    asked = []

    def candidates(per_dim, first_only):
        asked.append(per_dim)
        assert first_only == (per_dim == FINE_PER_DIM)     # the fine pass: the first list
        return per_dim
    find = lambda: plan_module._finalists([], candidates, None, 1)     # noqa: E731

    outcome.update({PER_DIM: [("a", "r", 0), ("b", "r", 2)], FINE_PER_DIM: [("c", "r", 0)]})
    assert find() == [("a", "r", 0), ("b", "r", 2)] and asked == [PER_DIM]
    asked.clear()
    outcome[PER_DIM] = [("b", "r", 2)]
    assert find() == [("b", "r", 2), ("c", "r", 0)] and asked == [PER_DIM, FINE_PER_DIM]
    outcome[PER_DIM] = WaferFitError("coarse")
    assert find() == [("c", "r", 0)]
    outcome[FINE_PER_DIM] = WaferFitError("fine")
    with pytest.raises(WaferFitError, match="coarse"):
        find()
    outcome[PER_DIM] = [("b", "r", 2)]
    assert find() == [("b", "r", 2)]


def test_candidate_lists_first_only_is_the_first_of_every_strategys_lists(case, sgd):
    kernels, _ = build_kernels(run_pipeline(case[1]))
    dens = {k.name: (1.0, 1.0) for k in kernels}
    samples = kernels[0].samples
    for strategy, count in (("auto", 2 + len(replica_counts(samples, T, "data")) - 1),
                            ("model", 1), ("data", len(replica_counts(samples, T, "data")))):
        every = candidate_lists(kernels, T, sgd, {}, dens, strategy)
        assert len(every) == count
        assert candidate_lists(kernels, T, sgd, {}, dens, strategy, first_only=True) == every[:1]
    auto = candidate_lists(kernels, T, sgd, {}, dens, "auto")
    assert auto[1:] == candidate_lists(kernels, T, sgd, {}, dens, "data")
