"""compiler.options: the mapping space of a kernel, derived from its loop nest.

Each option's figures must be the cost model's (memory, per-sample cycles, update), every option
must fit SRAM and the fabric, and the list must be the Pareto front of every valid mapping:
nothing dropped that some kept option does not beat on both area and stage time.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from compiler import estimate
from compiler.mapping import Mapping
from compiler.optim_spec import OptimizerSpec
from compiler.options import (FINE_PER_DIM, PER_DIM, Cells, Option, _thin, boundary_cycles,
                              cached_options, kernel_options, pareto, unroll_counts, unrollings)
from compiler.target import wafer

T = wafer("classroom")
SGD = OptimizerSpec("sgd", lr=0.1)
ADAM = OptimizerSpec("adam", lr=1e-3)


# ---------------------------------------------------------------- unroll counts


@pytest.mark.parametrize("extent,limit", [(10, 32), (1, 5), (7, 3), (100, 32), (784, 633), (33, 33)])
def test_unroll_counts_are_the_smallest_count_per_tile_size(extent, limit):
    counts = unroll_counts(extent, limit)
    assert counts == sorted(set(counts)) and counts[0] == 1
    assert all(1 <= n <= min(extent, limit) for n in counts)
    tiles = [math.ceil(extent / n) for n in counts]
    assert len(set(tiles)) == len(tiles)                       # one count per tile size
    # every n up to the limit gives a tile that some listed count gives with no more cores
    for n in range(1, min(extent, limit) + 1):
        tile = math.ceil(extent / n)
        assert min(c for c in counts if math.ceil(extent / c) == tile) <= n


def test_unroll_counts_by_hand():
    assert unroll_counts(10, 32) == [1, 2, 3, 4, 5, 10]
    assert unroll_counts(10, 4) == [1, 2, 3, 4]
    assert unroll_counts(1, 32) == [1]


def test_thin_keeps_both_ends_and_at_most_keep():
    counts = list(range(1, 200))
    for keep in (2, 5, 24):
        thin = _thin(counts, keep)
        assert thin[0] == 1 and thin[-1] == 199 and len(thin) <= keep + 2
        assert thin == sorted(set(thin)) and set(thin) <= set(counts)
    assert _thin([1, 2, 3], 24) == [1, 2, 3]


# ---------------------------------------------------------------- option figures


def random_kernel(r, make_matmul, make_generated):
    samples = int(r.integers(1, 33))
    if r.random() < 0.75:
        return make_matmul(k=int(r.integers(1, 500)), n=int(r.integers(1, 500)), samples=samples,
                           tokens=int(r.integers(1, 4)), dx=bool(r.random() < 0.7))
    return make_generated(elements=int(r.integers(1, 3000)), samples=samples,
                          flops=int(r.integers(1, 6)))


def test_options_carry_the_cost_models_figures(make_matmul, make_generated):
    r = np.random.default_rng(0)
    seen = 0
    for _ in range(40):
        kern = random_kernel(r, make_matmul, make_generated)
        target = wafer("classroom", sram_bytes=int(r.integers(2, 64)) * 1024)
        opt, flight = [SGD, ADAM][int(r.integers(2))], int(r.integers(1, 9))
        density = (float(r.uniform(0.1, 1)), float(r.uniform(0.1, 1)))
        for o in kernel_options(kern, target, opt, flight, density, replicas=(1, 2, 4), per_dim=8):
            m, base = o.mapping, Mapping(o.mapping.rows, o.mapping.cols)
            assert o.memory == estimate.memory_per_core(kern, base, target, opt, flight)
            assert o.memory <= target.sram_bytes
            assert o.sample_cycles == estimate.sample_cycles(kern, base, target, density)
            assert o.step_cycles == estimate.update_cycles(kern, m, target, opt)
            assert m.rows <= target.rows and m.width <= target.cols
            assert m.replicas <= kern.samples
            if kern.kind == "matmul":
                assert m.rows <= kern.nest.extent("i") and m.cols <= kern.nest.extent("j")
            else:
                assert m.rows * m.cols <= kern.nest.extent("e")
            seen += 1
    assert seen > 100


def test_options_are_a_pareto_front(make_matmul, make_generated):
    r = np.random.default_rng(1)
    for _ in range(20):
        kern = random_kernel(r, make_matmul, make_generated)
        opts = kernel_options(kern, T, SGD, 3, replicas=(1, 2, 4))
        assert opts
        s = kern.samples
        areas = [o.area for o in opts]
        times = [o.stage_time(s) for o in opts]
        assert areas == sorted(areas)
        assert all(a < b for a, b in zip(times[1:], times))     # more area only if it is faster
        for a in opts:                                           # nothing dominates anything kept
            assert not any(b is not a and b.area <= a.area and b.stage_time(s) <= a.stage_time(s)
                           for b in opts)


def all_valid(kern, target, opt, flight, replicas):
    """Every mapping of the kernel, enumerated here, that fits SRAM and the fabric."""
    if kern.kind == "matmul":
        max_r, max_c = kern.nest.extent("i"), kern.nest.extent("j")
    else:
        max_r = max_c = kern.nest.extent("e")
    out = []
    for rows in range(1, min(max_r, target.rows) + 1):
        for cols in range(1, min(max_c, target.cols) + 1):
            if kern.kind != "matmul" and rows * cols > max_r:
                continue
            base = Mapping(rows, cols)
            mem = estimate.memory_per_core(kern, base, target, opt, flight)
            if mem > target.sram_bytes:
                continue
            t = estimate.sample_cycles(kern, base, target)
            for rep in replicas:
                if rep <= kern.samples and cols * rep <= target.cols:
                    m = Mapping(rows, cols, rep)
                    out.append(Option(m, t, estimate.update_cycles(kern, m, target, opt), mem))
    return out


def test_no_valid_mapping_beats_the_front(make_matmul, make_generated):
    """Without thinning (small extents), every valid mapping is matched or beaten by an option."""
    r = np.random.default_rng(2)
    small = wafer("classroom", rows=12, cols=12, sram_bytes=int(8 * 1024))
    for _ in range(30):
        samples = int(r.integers(1, 9))
        kern = (make_matmul(k=int(r.integers(1, 20)), n=int(r.integers(1, 20)), samples=samples,
                            tokens=int(r.integers(1, 3)))
                if r.random() < 0.7 else make_generated(elements=int(r.integers(1, 40)), samples=samples))
        opt = [SGD, ADAM][int(r.integers(2))]
        front = kernel_options(kern, small, opt, 2, replicas=(1, 2, 4), per_dim=64)
        for v in all_valid(kern, small, opt, 2, (1, 2, 4)):
            assert any(o.area <= v.area and o.stage_time(samples) <= v.stage_time(samples)
                       for o in front), (kern, v)


def test_sram_cuts_off_the_small_options(make_matmul):
    kern = make_matmul(k=512, n=512, samples=8)
    roomy = kernel_options(kern, wafer("classroom", sram_bytes=1 << 23), ADAM, 4)
    tight = kernel_options(kern, wafer("classroom", sram_bytes=16 * 1024), ADAM, 4)
    assert roomy[0].area == 1                          # one core holds it all with 8 MB
    assert tight and tight[0].area > roomy[0].area
    assert all(o.memory <= 16 * 1024 for o in tight)
    assert kernel_options(kern, wafer("classroom", rows=2, cols=2, sram_bytes=1024), ADAM, 4) == []


def test_replicas_appear_only_when_allowed(make_matmul):
    kern = make_matmul(k=32, n=32, samples=256)
    assert {o.mapping.replicas for o in kernel_options(kern, T, SGD, 1)} == {1}
    reps = {o.mapping.replicas for o in kernel_options(kern, T, SGD, 1, replicas=(1, 2, 4, 8))}
    assert reps - {1}                                   # replicas pay off for a small layer
    few = make_matmul(k=32, n=32, samples=2)
    assert max(o.mapping.replicas for o in kernel_options(few, T, SGD, 1, replicas=(1, 2, 4, 8))) <= 2


def test_non_square_options_follow_the_layer(make_matmul):
    """rows != cols options exist, and the fastest option of a tall layer is taller than wide."""
    tall, wide = make_matmul(k=1024, n=16, samples=4), make_matmul(k=16, n=1024, samples=4)
    big = wafer("wse2")
    for kern, taller in ((tall, True), (wide, False)):
        opts = kernel_options(kern, big, SGD, 1)
        assert any(o.mapping.rows != o.mapping.cols for o in opts)
        best = opts[-1].mapping
        assert (best.rows > best.cols) == taller


def test_options_of_captured_kernels(built):
    kernels, _ = built
    for k in kernels:
        opts = kernel_options(k, T, SGD, 2, replicas=(1, 2))
        assert opts, k.name
        assert opts[0].area <= opts[-1].area
        assert opts[-1].stage_time(k.samples) <= opts[0].stage_time(k.samples)
    assert {k.kind for k in kernels} == {"matmul", "generated"}


def test_cached_options_share_repeated_layers(make_matmul):
    a, b = make_matmul("layers.0", k=48, n=48), make_matmul("layers.1", k=48, n=48)
    first = cached_options(a, T, SGD, 3, (1.0, 1.0), (1, 2))
    assert cached_options(b, T, SGD, 3, (1.0, 1.0), (1, 2)) is first
    assert first == kernel_options(a, T, SGD, 3, (1.0, 1.0), (1, 2))
    other = cached_options(a, T, ADAM, 3, (1.0, 1.0), (1, 2))
    assert other is not first and other == kernel_options(a, T, ADAM, 3, (1.0, 1.0), (1, 2))


def test_pareto_by_hand():
    a = Option(Mapping(1, 1), 100.0, 0, 1)
    b = Option(Mapping(1, 2), 100.0, 0, 1)      # more area, no faster: dropped
    c = Option(Mapping(2, 2), 40.0, 0, 1)
    d = Option(Mapping(4, 1), 50.0, 0, 1)       # same area as c, slower: dropped
    e = Option(Mapping(2, 4), 10.0, 0, 1)
    assert pareto([e, d, c, b, a], 1) == [a, c, e]


def test_lower_density_gives_faster_options(make_matmul):
    kern = make_matmul(k=256, n=256, samples=4)
    dense = kernel_options(kern, T, SGD, 2, (1.0, 1.0))
    sparse = kernel_options(kern, T, SGD, 2, (0.2, 0.2))
    assert min(o.stage_time(4) for o in sparse) < min(o.stage_time(4) for o in dense)


# ---------------------------------------------------------------- the region's boundary


def test_a_region_cannot_move_its_samples_faster_than_its_boundary(make_generated):
    """Routes leave and enter over one lane per core of a side: with a kernel's route traffic
    given, every option's stage time covers the wavelets over its wider side, and among
    options of equal area and time the squarest region is kept."""
    kern = make_generated(elements=256, samples=4)
    quiet = kernel_options(kern, T, SGD, 2)
    loud = kernel_options(kern, T, SGD, 2, boundary=4096.0)
    for o in loud:
        assert o.boundary_cycles == 4096.0 / max(o.mapping.rows, o.mapping.cols)
        assert o.stage_time(4) >= o.boundary_cycles / o.mapping.replicas
    smallest = lambda opts: min(o.area for o in opts)        # noqa: E731
    assert smallest(loud) >= smallest(quiet)
    assert min(o.stage_time(4) for o in loud) >= min(o.stage_time(4) for o in quiet)
    tie = [Option(Mapping(1, 16), 10.0, 0.0, 100), Option(Mapping(4, 4), 10.0, 0.0, 100)]
    assert [o.mapping for o in pareto(tie, 4)] == [Mapping(4, 4)]


def reference_pareto(options, samples):
    """Sort by (area, stage time, widest narrow side), keep each option faster than the last kept."""
    best = []
    narrow = lambda o: min(o.mapping.rows, o.mapping.width)       # noqa: E731
    for opt in sorted(options, key=lambda o: (o.area, o.stage_time(samples), -narrow(o))):
        if not best or opt.stage_time(samples) < best[-1].stage_time(samples):
            best.append(opt)
    return best


def reference_options(kernel, target, optimizer, in_flight, density=(1.0, 1.0), replicas=(1,),
                      per_dim=24, harvest=True, boundary=0.0):
    """`kernel_options` building every option one by one from the cost model, then the front."""
    rows_extent, cols_extent = kernel.nest.extents
    if kernel.nest.one_dim:
        per_dim = min(per_dim, PER_DIM)
    options = []
    for r in unrollings(rows_extent, target.rows, per_dim):
        for c in unrollings(cols_extent, target.cols, per_dim):
            if kernel.nest.one_dim and r * c > rows_extent:
                continue
            memory = estimate.memory_per_core(kernel, Mapping(r, c), target, optimizer, in_flight)
            if memory > target.sram_bytes:
                continue
            sample = estimate.sample_cycles(kernel, Mapping(r, c), target, density, harvest)
            for rep in replicas:
                if rep > kernel.samples or r > target.rows or c * rep > target.cols:
                    continue
                m = Mapping(r, c, rep)
                options.append(Option(m, sample, estimate.update_cycles(kernel, m, target, optimizer),
                                      memory, boundary_cycles(boundary, m)))
    return reference_pareto(options, kernel.samples)


def test_kernel_options_are_the_reference_options(make_matmul, make_generated):
    """Fresh, and through one shared `Cells` over every replica set, position and boundary."""
    r = np.random.default_rng(14)
    for _ in range(8):
        kern = random_kernel(r, make_matmul, make_generated)
        target = wafer("classroom", sram_bytes=int(r.integers(4, 48)) * 1024)
        cells = Cells(kern, target)
        for _ in range(3):
            args = ([SGD, ADAM][int(r.integers(2))], int(r.integers(1, 9)),
                    (float(r.uniform(0.1, 1)), 1.0), [(1,), (2,), (1, 2, 4)][int(r.integers(3))])
            kwargs = {"per_dim": 10, "boundary": float(r.choice([0.0, 50.0, 4096.0]))}
            want = reference_options(kern, target, *args, **kwargs)
            assert kernel_options(kern, target, *args, **kwargs) == want
            assert kernel_options(kern, target, *args, **kwargs, cells=cells) == want


def test_pareto_is_the_reference_front():
    r = np.random.default_rng(15)
    for _ in range(60):
        options = [Option(Mapping(int(r.integers(1, 5)), int(r.integers(1, 5)), int(r.integers(1, 3))),
                          float(r.integers(1, 6)), float(r.integers(0, 3)), 0, float(r.integers(0, 4)))
                   for _ in range(int(r.integers(0, 30)))]       # small integers: many ties
        samples = int(r.integers(1, 4))
        assert pareto(options, samples) == reference_pareto(options, samples)


def test_a_finer_grid_adds_two_dimensional_shapes_and_keeps_one_dimensional_nests(
        make_matmul, make_generated):
    """`FINE_PER_DIM` tries more unrollings of a matmul (the packer gets more shapes) and
    never a worse front; an element-wise nest keeps `PER_DIM`'s."""
    target = wafer("wse2")
    matmul = make_matmul("fc", 768, 3072, samples=8, tokens=128)
    coarse = kernel_options(matmul, target, SGD, 1, per_dim=PER_DIM)
    fine = kernel_options(matmul, target, SGD, 1, per_dim=FINE_PER_DIM)
    assert {o.mapping for o in fine} - {o.mapping for o in coarse}
    for o in coarse:      # whatever the coarse front reaches, the fine one reaches as cheaply
        assert min(f.area for f in fine if f.stage_time(8) <= o.stage_time(8)) <= o.area
    element_wise = make_generated("ln", 98304, 8)
    assert kernel_options(element_wise, target, SGD, 1, per_dim=FINE_PER_DIM) == \
        kernel_options(element_wise, target, SGD, 1, per_dim=PER_DIM)
