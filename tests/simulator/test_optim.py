"""simulator.optim against torch.optim on identical gradients: 20 updates, parameters within 1e-6."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from simulator.optim import clip_grad_norm, flops_per_element, init_state, mask_state, update


@dataclass(frozen=True)
class Spec:
    """Stand-in with the fields of compiler.optim_spec.OptimizerSpec (simulator.optim duck-types it)."""

    kind: str
    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


def _torch_optimizer(spec, params):
    if spec.kind == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, dampening=spec.dampening,
                               nesterov=spec.nesterov, weight_decay=spec.weight_decay)
    cls = torch.optim.Adam if spec.kind == "adam" else torch.optim.AdamW
    return cls(params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)


SPECS = [
    Spec("sgd", lr=0.1),
    Spec("sgd", lr=0.05, momentum=0.9),
    Spec("sgd", lr=0.05, momentum=0.9, dampening=0.1),
    Spec("sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    Spec("sgd", lr=0.01, weight_decay=0.05),
    Spec("adam", lr=1e-3),
    Spec("adam", lr=3e-3, weight_decay=0.01, betas=(0.8, 0.99), eps=1e-6),
    Spec("adamw", lr=1e-3, weight_decay=0.01),
    Spec("adamw", lr=2e-3, weight_decay=0.1, betas=(0.85, 0.95), eps=1e-7),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s}")
def test_matches_torch_optim_over_20_steps(spec):
    rng = np.random.default_rng(7)
    shapes = [(16, 8), (8,), (3, 4, 5)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    opt = _torch_optimizer(spec, tparams)
    states = [init_state(np, spec, p) for p in params]
    for step in range(1, 21):
        # tiny gradients too: Adam divides by sqrt(v), which exposes any rounding difference
        grads = [(rng.standard_normal(p.shape) * 10.0 ** rng.integers(-4, 1)).astype(np.float32) for p in params]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        for i, g in enumerate(grads):
            params[i], states[i] = update(np, spec, params[i], g, states[i], step)
            assert params[i].dtype == np.float32
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=0, atol=1e-6)
    for state, tp in zip(states, tparams):
        for key, value in state.items():
            np.testing.assert_allclose(value, opt.state[tp][key].numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS[:3] + SPECS[5:6], ids=lambda s: s.kind)
def test_one_step_is_bit_exact(spec):
    """One update is elementwise and reduction-free, so it must equal torch exactly."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(1000).astype(np.float32)
    tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
    opt = _torch_optimizer(spec, [tp])
    state = init_state(np, spec, p)
    for step in (1, 2):
        g = rng.standard_normal(1000).astype(np.float32)
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        p, state = update(np, spec, p, g, state, step)
        np.testing.assert_array_equal(p, tp.detach().numpy())


def test_init_state_and_purity():
    p = np.ones(3, np.float32)
    assert init_state(np, Spec("sgd", lr=0.1), p) == {}
    assert init_state(np, Spec("sgd", lr=0.1, momentum=0.9), p) == {"momentum_buffer": None}
    state = init_state(np, Spec("adam", lr=0.1), p)
    assert set(state) == {"exp_avg", "exp_avg_sq"} and not state["exp_avg"].any()
    new_p, new_state = update(np, Spec("adam", lr=0.1), p, np.full(3, 0.5, np.float32), state, 1)
    assert (p == 1).all() and not state["exp_avg"].any()  # inputs untouched
    assert new_state["exp_avg"].any() and (new_p < 1).all()


def test_unknown_kind_and_flops():
    with pytest.raises(ValueError, match="rmsprop"):
        init_state(np, Spec("rmsprop", lr=0.1), np.ones(2, np.float32))
    assert flops_per_element(Spec("sgd", lr=0.1)) < flops_per_element(Spec("sgd", lr=0.1, momentum=0.9))
    assert flops_per_element(Spec("adam", lr=0.1)) > flops_per_element(Spec("sgd", lr=0.1, momentum=0.9))


@pytest.mark.parametrize("spec", [SPECS[1], SPECS[5]], ids=lambda s: s.kind)
def test_mask_state_zeros_masked_positions_only(spec):
    rng = np.random.default_rng(5)
    p = rng.standard_normal((6, 7)).astype(np.float32)
    keep = rng.random((6, 7)) < 0.4
    state = init_state(np, spec, p)
    if spec.kind == "sgd":
        assert mask_state(np, state, keep) == {"momentum_buffer": None}   # no buffer yet
    for step in (1, 2):
        p, state = update(np, spec, p, rng.standard_normal((6, 7)).astype(np.float32), state, step)
    masked = mask_state(np, state, keep)
    assert set(masked) == set(state)
    for slot, value in masked.items():
        assert value.dtype == state[slot].dtype
        assert (value[~keep] == 0).all()
        np.testing.assert_array_equal(value[keep], state[slot][keep])
        assert state[slot][~keep].any()        # the input is not modified


def test_update_kernels_equal_their_float64_formula_bit_for_bit():
    """The float32 shortcuts the updates take (``fma_wide``, ``add_scaled`` on two same-shape arrays)
    give what the general form's float64 formula gives, NaNs, infinities, -0 and subnormals included."""
    from simulator.ops import add_scaled, fma

    rng = np.random.default_rng(11)
    a, b, c = ((rng.standard_normal(3000) * 2.0 ** rng.integers(-130, 100, 3000)).astype(np.float32)
               for _ in range(3))
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45], np.float32)
    for v in (a, b, c):
        v[rng.integers(0, v.size, 40)] = rng.choice(special, 40)
    s, t = np.float32(-0.0123), np.asarray(3.5, np.float32)

    def wide(x, y, z):
        return (np.float64(x) * np.float64(y) + np.float64(z)).astype(np.float32)

    with np.errstate(all="ignore"):
        for x, y, z in [(a, b, c), (a, s, c), (s, a, c), (a, b, t), (t, a, s)]:
            got = fma(np, x, y, z)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got.view(np.int32), wide(x, y, z).view(np.int32))
        np.testing.assert_array_equal(add_scaled(np, a, b, -0.01).view(np.int32),
                                      wide(b, np.float32(-0.01), a).view(np.int32))
        p, _ = update(np, Spec("sgd", lr=0.01), a, b, {}, 1)
        np.testing.assert_array_equal(p.view(np.int32), wide(b, np.float32(-0.01), a).view(np.int32))


def test_saxpy_is_taken_only_where_it_rounds_once(monkeypatch):
    """The SGD update goes to BLAS's saxpy only if the probe finds it fused on every element:
    a saxpy that rounds the product first is refused, and the float64 form is used instead."""
    from simulator.ops import registry

    assert registry._saxpy_fused.__wrapped__() == registry._saxpy_fused()
    if not registry._saxpy_fused():
        pytest.skip("this machine's saxpy does not round once; the float64 form is used")
    monkeypatch.setattr(registry, "_saxpy", lambda a, b, c: a * np.float32(b) + c)   # unfused
    assert not registry._saxpy_fused.__wrapped__()
    registry._saxpy_fused.cache_clear()
    try:
        a, c = np.random.default_rng(2).standard_normal((2, 1001), dtype=np.float32)
        expected = (a.astype(np.float64) * np.float32(-0.01) + c).astype(np.float32)
        np.testing.assert_array_equal(registry.fma_wide(a, np.float32(-0.01), c), expected)
    finally:
        registry._saxpy_fused.cache_clear()


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e3])   # clipped hard, clipped, left as is
def test_clip_grad_norm_equals_torch(max_norm):
    rng = np.random.default_rng(3)
    grads = {f"p{i}": rng.standard_normal(shape).astype(np.float32)
             for i, shape in enumerate([(4, 5), (5,), (3, 2, 2)])}
    params = [torch.zeros(g.shape, requires_grad=True) for g in grads.values()]
    for p, g in zip(params, grads.values()):
        p.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    ours = clip_grad_norm(np, grads, max_norm)
    assert list(ours) == list(grads)
    for p, (name, g) in zip(params, ours.items()):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-6, atol=0, err_msg=name)
    before, after = (np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in gs.values()))
                     for gs in (grads, ours))
    assert after == pytest.approx(min(max_norm, before), rel=1e-5)


def test_clip_grad_norm_of_a_nonfinite_gradient_is_torchs():
    """An inf gradient makes the total inf and the coefficient 0: inf * 0 is NaN there, the
    other gradients become 0 (error_if_nonfinite=False); the step's NaN check then sees it."""
    grads = {"a": np.array([1.0, np.inf], dtype=np.float32), "b": np.ones(2, dtype=np.float32)}
    params = [torch.zeros(2, requires_grad=True) for _ in grads]
    for p, g in zip(params, grads.values()):
        p.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    ours = clip_grad_norm(np, grads, 1.0)
    for p, g in zip(params, ours.values()):
        np.testing.assert_array_equal(g, p.grad.numpy())
    assert np.isnan(ours["a"][1])
