"""compiler.search: the exact min-bottleneck search against an exhaustive reference.

Instances are small (up to 6 kernels, a few options each) so that `exhaustive` can try every
combination. Options are built directly (random areas and times) and from real kernels
(`kernel_options` on hand-built and captured layers). Every instance is solved for several
capacities, from infeasible (no combination fits: both answer None) to unconstrained.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from compiler.mapping import Mapping
from compiler.kernels import build_kernels
from compiler.optim_spec import OptimizerSpec
from compiler.options import Option, kernel_options, pareto
from compiler.search import (Choice, Lists, candidate_times, cheapest_at, exhaustive, feasible,
                             finalist_key, least_packable, min_bottleneck, restrict_replicas)
from compiler.target import wafer

T = wafer("classroom")
SGD = OptimizerSpec("sgd", lr=0.1)
ADAM = OptimizerSpec("adam", lr=1e-3)


def random_option(r, max_side=6, max_replicas=3) -> Option:
    m = Mapping(int(r.integers(1, max_side + 1)), int(r.integers(1, max_side + 1)),
                int(r.integers(1, max_replicas + 1)))
    # times on a coarse grid so that ties between kernels and options happen
    return Option(m, sample_cycles=float(r.integers(1, 40) * 4), step_cycles=float(r.integers(0, 50)),
                  memory=int(r.integers(1, 1000)))


def random_lists(r, sort=True) -> dict:
    """Up to 6 kernels with 1-4 options each (area-sorted unless `sort` is False)."""
    lists = {}
    for k in range(int(r.integers(1, 7))):
        opts = [random_option(r) for _ in range(int(r.integers(1, 5)))]
        lists[f"k{k}"] = sorted(opts, key=lambda o: o.area) if sort else opts
    return lists


def capacities(lists: dict) -> list[int]:
    """From below the smallest possible total area (infeasible) to above the largest."""
    low = sum(min(o.area for o in opts) for opts in lists.values())
    high = sum(max(o.area for o in opts) for opts in lists.values())
    return sorted({0, max(low - 1, 0), low, (low + high) // 2, (2 * low + high) // 3, high, high + 7})


def check_same(lists: dict, capacity: int, samples: int) -> Choice | None:
    fast, ref = min_bottleneck(lists, capacity, samples), exhaustive(lists, capacity, samples)
    if ref is None:
        assert fast is None, (capacity, fast)
        return None
    assert fast is not None, (capacity, ref)
    assert fast.bottleneck == pytest.approx(ref.bottleneck, rel=1e-12)
    # the choice is a real, feasible selection whose figures are what it claims
    assert set(fast.options) == set(lists)
    for name, opt in fast.options.items():
        assert opt in lists[name]
    assert fast.area == sum(o.area for o in fast.options.values()) <= capacity
    assert fast.bottleneck == max(o.stage_time(samples) for o in fast.options.values())
    return fast


@pytest.mark.parametrize("seed", range(8))
def test_min_bottleneck_matches_exhaustive_on_random_options(seed):
    r = np.random.default_rng(seed)
    solved = infeasible = 0
    for _ in range(40):
        lists = random_lists(r)
        samples = int(r.integers(1, 65))
        for cap in capacities(lists):
            if check_same(lists, cap, samples) is None:
                infeasible += 1
            else:
                solved += 1
    assert solved > 50 and infeasible > 10       # both outcomes are exercised


@pytest.mark.parametrize("seed", range(4))
def test_min_bottleneck_on_pareto_fronts(seed):
    """The search's real input: Pareto fronts (area up, stage time down)."""
    r = np.random.default_rng(100 + seed)
    for _ in range(40):
        samples = int(r.integers(1, 33))
        lists = {f"k{k}": pareto([random_option(r) for _ in range(6)], samples)
                 for k in range(int(r.integers(1, 7)))}
        for cap in capacities(lists):
            check_same(lists, cap, samples)


def real_option_lists(r, matmul_kernel, generated_kernel, target=T):
    """Option lists of hand-built layers, cut to a few options each so exhaustive stays small."""
    lists = {}
    samples = int(r.integers(1, 17))
    for k in range(int(r.integers(2, 7))):
        if r.random() < 0.75:
            kern = matmul_kernel(f"fc{k}", k=int(r.integers(4, 300)), n=int(r.integers(4, 300)),
                                 samples=samples, tokens=int(r.integers(1, 3)))
        else:
            kern = generated_kernel(f"g{k}", elements=int(r.integers(4, 600)), samples=samples)
        opts = kernel_options(kern, target, [SGD, ADAM][int(r.integers(2))],
                              in_flight=int(r.integers(1, 8)), replicas=(1, 2, 4), per_dim=6)
        if not opts:
            continue
        keep = sorted(r.choice(len(opts), size=min(4, len(opts)), replace=False))
        lists[kern.name] = [opts[i] for i in keep]
    return lists, samples


@pytest.mark.parametrize("seed", range(4))
def test_min_bottleneck_on_real_kernel_options(seed, make_matmul, make_generated):
    r = np.random.default_rng(200 + seed)
    for _ in range(10):
        lists, samples = real_option_lists(r, make_matmul, make_generated)
        for cap in capacities(lists) + [T.cores]:
            check_same(lists, cap, samples)


def test_min_bottleneck_on_captured_mlp_kernels(lowered):
    """Options of every kernel of the captured MLP (fc1, fc2, log_softmax), thinned to 4."""
    kernels, _ = build_kernels(lowered)
    samples = kernels[0].samples
    lists = {}
    for i, k in enumerate(kernels):
        opts = kernel_options(k, T, SGD, in_flight=2 * (len(kernels) - i) - 1, replicas=(1, 2, 4))
        step = max(1, len(opts) // 4)
        lists[k.name] = opts[::step][:4]
    for cap in capacities(lists):
        check_same(lists, cap, samples)


def test_single_kernel_takes_its_fastest_option_that_fits():
    opts = [Option(Mapping(1, 1), 100.0, 0.0, 8), Option(Mapping(2, 2), 30.0, 0.0, 8),
            Option(Mapping(4, 4), 10.0, 0.0, 8)]
    assert min_bottleneck({"a": opts}, 16, 1).options["a"] is opts[2]
    assert min_bottleneck({"a": opts}, 15, 1).options["a"] is opts[1]
    assert min_bottleneck({"a": opts}, 1, 1).options["a"] is opts[0]
    assert min_bottleneck({"a": opts}, 0, 1) is None and exhaustive({"a": opts}, 0, 1) is None


def test_area_goes_to_the_bottleneck_by_hand():
    """Two kernels share 10 cores: the slow one must get the big option."""
    slow = [Option(Mapping(1, 1), 80.0, 0, 1), Option(Mapping(2, 4), 12.0, 0, 1)]
    fast = [Option(Mapping(1, 1), 10.0, 0, 1), Option(Mapping(2, 4), 2.0, 0, 1)]
    choice = min_bottleneck({"slow": slow, "fast": fast}, 10, 1)
    assert choice.options == {"slow": slow[1], "fast": fast[0]}
    assert choice.bottleneck == 12.0 and choice.area == 9


def test_stage_time_spreads_samples_over_replicas_and_the_step_work_over_samples():
    o = Option(Mapping(2, 3, 4), sample_cycles=40.0, step_cycles=64.0, memory=1)
    assert o.area == 24
    assert o.stage_time(16) == pytest.approx(40 / 4 + 64 / 16)
    assert o.stage_time(0) == pytest.approx(10 + 64)          # no division by zero


def test_feasibility_is_monotone_in_the_target_time():
    """The reason bisection is exact: the cheapest area at T never grows as T grows."""
    r = np.random.default_rng(7)
    for _ in range(50):
        lists = random_lists(r)
        samples = int(r.integers(1, 17))
        times = candidate_times(lists, samples)
        areas = []
        for t in times:
            picks = [cheapest_at(opts, t, samples) for opts in lists.values()]
            assert all(p is not None for p in picks)          # every candidate is >= the floor
            areas.append(sum(p.area for p in picks))
        assert areas == sorted(areas, reverse=True)
        cap = areas[len(areas) // 2]
        ok = [feasible(lists, t, cap, samples) is not None for t in times]
        assert ok == sorted(ok)                             # False ... False True ... True


def test_candidate_times_start_at_the_largest_minimum():
    lists = {"a": [Option(Mapping(1, 1), 50.0, 0, 1), Option(Mapping(2, 1), 20.0, 0, 1)],
             "b": [Option(Mapping(1, 1), 30.0, 0, 1), Option(Mapping(2, 1), 25.0, 0, 1)]}
    assert candidate_times(lists, 1) == [25.0, 30.0, 50.0]


def test_start_skips_faster_targets():
    """`start` (used to relax after a failed packing) searches only targets above it: on Pareto
    fronts, whose every candidate time is met exactly, the next candidate is the answer."""
    r = np.random.default_rng(11)
    for _ in range(30):
        samples = int(r.integers(1, 9))
        lists = {f"k{k}": pareto([random_option(r) for _ in range(5)], samples)
                 for k in range(int(r.integers(1, 5)))}
        best = min_bottleneck(lists, 10 ** 6, samples)
        relaxed = min_bottleneck(lists, 10 ** 6, samples, start=best.bottleneck)
        later = [t for t in candidate_times(lists, samples) if t > best.bottleneck]
        if not later:
            assert relaxed is None
        else:
            assert relaxed.bottleneck == later[0]   # unconstrained: every candidate is feasible
            assert relaxed.area <= best.area        # a slower target never needs more area


def test_restrict_replicas():
    r = np.random.default_rng(3)
    lists = random_lists(r)
    for rep in (1, 2, 3):
        kept = restrict_replicas(lists, rep)
        assert set(kept) == set(lists)
        for name, opts in kept.items():
            assert opts == [o for o in lists[name] if o.mapping.replicas == rep]


def test_exhaustive_is_really_exhaustive():
    """The reference itself, against a plain enumeration written out here."""
    r = np.random.default_rng(5)
    for _ in range(30):
        lists = random_lists(r)
        cap = capacities(lists)[3]
        combos = [c for c in itertools.product(*lists.values()) if sum(o.area for o in c) <= cap]
        ref = exhaustive(lists, cap, 4)
        if not combos:
            assert ref is None
        else:
            assert ref.bottleneck == min(max(o.stage_time(4) for o in c) for c in combos)


def test_min_bottleneck_does_not_depend_on_option_order():
    r = np.random.default_rng(9)
    for _ in range(200):
        lists = random_lists(r, sort=False)
        samples = int(r.integers(1, 65))
        for cap in capacities(lists):
            check_same(lists, cap, samples)


def test_kernel_without_options_is_infeasible():
    lists = {"a": [Option(Mapping(1, 1), 5.0, 0, 1)], "b": []}
    assert exhaustive(lists, 100, 1) is None
    assert min_bottleneck(lists, 100, 1) is None


def test_least_packable_finds_the_least_time_a_monotone_packer_accepts():
    """With a packer that accepts a target when its cheapest choice takes at most `limit` cores
    (monotone in the target), the bisection returns exactly the least target that does."""
    for seed in range(8):
        r = np.random.default_rng(seed)
        lists, samples = random_lists(r), 8
        times = candidate_times(lists, samples)
        if not times:
            continue
        big = sum(max(o.area for o in opts) for opts in lists.values())
        for limit in sorted({big, big // 2, big // 3}):
            target, packed, tries = least_packable(
                times, 0, lambda t: feasible(lists, t, limit, samples))
            expected = next((t for t in times if feasible(lists, t, limit, samples)), None)
            if expected is None:
                assert target is None and packed is None
            else:
                assert target == expected and packed == feasible(lists, expected, limit, samples)
                assert packed.area <= limit and packed.bottleneck <= target
            assert tries <= max(1, len(times)).bit_length() + 1


def test_least_packable_scans_below_a_non_monotone_answer():
    """Packing is not exactly monotone in the target: a packer that accepts targets 3 and 7..9
    makes the bisection land on 7, and `below` candidates under it find 3 when in reach."""
    times, accepts = list(range(10)), {3, 7, 8, 9}

    def pack(t):
        return f"packed at {t}" if t in accepts else None
    assert least_packable(times, 0, pack)[:2] == (7, "packed at 7")
    assert least_packable(times, 0, pack, below=3)[:2] == (7, "packed at 7")    # 4..6 fail
    target, packed, tries = least_packable(times, 0, pack, below=4)
    assert (target, packed) == (3, "packed at 3")
    assert tries == least_packable(times, 0, pack)[2] + 4
    assert least_packable(times, 5, pack, below=9)[0] == 7      # never below `start`
    assert least_packable(times, 0, lambda t: None) == (None, None, 4)


def test_least_packable_deadline_never_loses_the_answer():
    """A deadline already past stops the search right after the first target that packs: the
    answer may be a slower target, but one is always returned when any packs."""
    times = list(range(100))
    target, packed, tries = least_packable(times, 0, lambda t: t if t >= 10 else None,
                                           below=5, deadline=float("-inf"))
    assert tries == 1 and target == packed == 49            # the first midpoint packs
    target, packed, tries = least_packable(times, 0, lambda t: t if t >= 90 else None,
                                           deadline=float("-inf"))
    assert target == packed >= 90 and tries >= 2            # the failures before it all run


def reference_cheapest(options, limit, samples):
    fitting = [o for o in options if o.stage_time(samples) <= limit]
    return min(fitting, key=lambda o: (o.area, o.stage_time(samples))) if fitting else None


def reference_times(option_lists, samples):
    if any(not opts for opts in option_lists.values()):
        return []
    floor = max(min(o.stage_time(samples) for o in opts) for opts in option_lists.values())
    return sorted({o.stage_time(samples) for opts in option_lists.values() for o in opts
                   if o.stage_time(samples) >= floor})


def shared_lists(r):
    """Option lists with ties on area and time; some kernels share one list (repeated layers)."""
    def one():
        return [Option(Mapping(int(r.integers(1, 4)), int(r.integers(1, 4))),
                       float(r.integers(1, 8)), 0.0, 0) for _ in range(int(r.integers(0, 7)))]
    shared = one()
    return {f"k{i}": shared if r.random() < 0.4 else one() for i in range(int(r.integers(1, 6)))}


def test_lists_pick_the_reference_cheapest_and_times():
    r = np.random.default_rng(16)
    for _ in range(100):
        lists = shared_lists(r)
        table = Lists(lists, 1)
        assert table.times() == reference_times(lists, 1)
        for limit in np.arange(0.0, 9.0, 0.5):
            for opts in lists.values():
                assert table.cheapest(opts, limit) is reference_cheapest(opts, limit, 1)


def fake_estimate(cycles: float, work: dict, congestion: dict) -> dict:
    """The fields of `Plan.estimate()` that `finalist_key` reads: a stage takes the longer of
    its kernel's work and the congestion of its routes."""
    return {"cycles": cycles, "congestion_cycles": congestion,
            "per_sample_cycles": {k: max(work[k], congestion[k]) for k in work}}


def test_finalists_never_congestion_bound_when_a_compute_bound_one_is_as_fast():
    """Among finalists, the one kept has the fewest cycles; of those, one whose slowest stage is
    bound by its kernel's work wins over one bound by congestion, whatever their order."""
    r = np.random.default_rng(11)
    for _ in range(200):
        plans = []
        for _ in range(int(r.integers(1, 5))):
            work = {k: float(r.integers(1, 10)) for k in "abc"}
            congestion = {k: float(r.integers(0, 10)) for k in "abc"}
            plans.append(fake_estimate(float(r.integers(5, 8)), work, congestion))
        best = min(plans, key=finalist_key)
        assert best["cycles"] == min(p["cycles"] for p in plans)
        fits = [p for p in plans if not finalist_key(p)[1] and p["cycles"] <= best["cycles"]]
        if fits:
            assert not finalist_key(best)[1]
    bound = fake_estimate(10.0, {"a": 5.0}, {"a": 7.0})
    fit = fake_estimate(10.0, {"a": 7.0}, {"a": 5.0})
    assert finalist_key(bound)[1] and not finalist_key(fit)[1]
    assert min([bound, fit], key=finalist_key) is fit and min([fit, bound], key=finalist_key) is fit
    assert min([bound, fake_estimate(11.0, {"a": 7.0}, {"a": 5.0})], key=finalist_key) is bound
