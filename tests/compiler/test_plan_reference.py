"""compile_plan's fast paths against the slow, obvious references of their modules' tests, all
at once: the nearest free spot (test_free_space), refinement (test_placement), option lists and
their Pareto front (test_options), the search's cheapest options and candidate times
(test_search), and the packers' shared tables and shelf fill (test_packing). With every
reference patched in, compile_plan must decide exactly as it does without them.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import compiler.packing as packing
import compiler.plan as plan_module
import compiler.search as search
from compiler import compile_plan, wafer
from compiler.free_space import FreeSpace
from compiler.frontend import capture, optimizer_spec
from compiler.options import clear_cache
from tests.compiler.test_free_space import reference_nearest
from tests.compiler.test_options import reference_options
from tests.compiler.test_packing import reference_fill
from tests.compiler.test_placement import reference_refine
from tests.compiler.test_search import reference_cheapest, reference_times

import wsebench as wb


@pytest.fixture
def references(monkeypatch):
    """compile_plan with every fast path replaced by its reference."""
    monkeypatch.setattr(FreeSpace, "nearest", reference_nearest)
    monkeypatch.setattr(plan_module, "refine", reference_refine)
    monkeypatch.setattr(plan_module, "cached_options",
                        lambda k, t, o, f, d, reps, harvest, boundary, per_dim:
                        reference_options(k, t, o, f, d, reps, per_dim, harvest, boundary))
    monkeypatch.setattr(search.Lists, "cheapest",
                        lambda self, opts, limit: reference_cheapest(opts, limit, self.samples))
    monkeypatch.setattr(search.Lists, "times",
                        lambda self: reference_times(self.option_lists, self.samples))
    monkeypatch.setattr(packing, "_fill", reference_fill)
    monkeypatch.setattr(packing, "_kernels", lambda items, limit, rows, cols: {
        n: packing._Kernel(s, limit, rows, cols) for n, s in items.items()})
    fresh = packing.shapes_of
    monkeypatch.setattr(packing, "shapes_of", lambda lists, samples: {
        n: fresh({n: list(opts)}, samples)[n] for n, opts in lists.items()})


@pytest.fixture(scope="module")
def stack():
    """A 3-layer transformer: repeated layers share option lists, shapes and shelf tables."""
    torch.manual_seed(0)
    model = wb.models.transformer(vocab=20, d_model=16, heads=2, layers=3, ffn=32, max_len=8,
                                  classes=2)
    example = (torch.randint(1, 20, (8, 8)), torch.randint(0, 2, (8,)))
    opt = optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.1))
    return capture(model, nn.CrossEntropyLoss(), example, method="aot"), opt


# both relax the target after T* and refine moves kernels in each
CASES = [({"rows": 12, "cols": 40}, "auto"), ({"rows": 20, "cols": 20}, "data")]


@pytest.mark.parametrize("overrides,strategy", CASES)
def test_compile_plan_decides_as_the_references_do(stack, overrides, strategy, request):
    graph, opt = stack
    target = wafer("classroom", **overrides)
    clear_cache()
    fast = compile_plan(graph, target, opt, mapping=strategy)
    request.getfixturevalue("references")
    slow = compile_plan(graph, target, opt, mapping=strategy)
    assert fast.to_json() == slow.to_json()
    assert fast.estimate() == slow.estimate()
