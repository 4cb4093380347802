"""Optimizer update kernels, written once against the array module ``xp``.

Each update mirrors torch 2.13's single-tensor implementation, the one torch.optim runs on CPU
(``_default_to_fused_or_foreach`` picks foreach only for CUDA-like devices): ``_single_tensor_sgd``
in torch/optim/sgd.py and ``_single_tensor_adam`` in torch/optim/adam.py (AdamW is Adam with
``decoupled_weight_decay=True``). The op order and the float32 rounding of every Scalar follow
that code, so parameters match torch eager within float32 rounding (DESIGN.md, "Numerics contract").

``spec`` is any object with the fields of ``compiler.optim_spec.OptimizerSpec``: ``kind``
("sgd" | "adam" | "adamw"), ``lr``, ``momentum``, ``dampening``, ``nesterov``, ``weight_decay``,
``betas``, ``eps``. State is a plain ``dict[str, array]``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator.ops import add_scaled, fma, lerp

KINDS = ("sgd", "adam", "adamw")


def _kind(spec: Any) -> str:
    kind = str(spec.kind).lower()
    if kind not in KINDS:
        raise ValueError(f"unknown optimizer kind {spec.kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def _f32(param, value: float):
    """A Python float rounded to the parameter's dtype, as torch casts Scalar arguments to scalar_t."""
    return param.dtype.type(value)


def init_state(xp, spec: Any, param) -> dict[str, Any]:
    """Fresh optimizer state for one parameter.

    SGD with momentum holds ``{"momentum_buffer": None}``: torch creates the buffer as a copy of
    the first gradient rather than from zeros, so "no buffer yet" must be distinguishable.
    Adam/AdamW hold zero ``exp_avg`` and ``exp_avg_sq`` (adam.py ``_init_group``).
    """
    if _kind(spec) == "sgd":
        return {"momentum_buffer": None} if spec.momentum != 0 else {}
    return {"exp_avg": xp.zeros_like(param), "exp_avg_sq": xp.zeros_like(param)}


def update(xp, spec: Any, param, grad, state: dict[str, Any], step: int):
    """Apply one optimizer step; return ``(new_param, new_state)`` without mutating the inputs.

    ``step`` counts updates from 1, like torch's ``state["step"]`` after its increment.
    """
    if _kind(spec) == "sgd":
        return _sgd(xp, spec, param, grad, state)
    return _adam(xp, spec, param, grad, state, step)


def _sgd(xp, spec, param, grad, state):
    """torch/optim/sgd.py ``_single_tensor_sgd`` (maximize=False)."""
    if spec.weight_decay != 0:
        grad = add_scaled(xp, grad, param, spec.weight_decay)
    new_state = dict(state)
    if spec.momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = grad.copy()  # first step: buf = clone(grad), no dampening applied
        else:
            buf = add_scaled(xp, buf * _f32(buf, spec.momentum), grad, 1 - spec.dampening)
        new_state["momentum_buffer"] = buf
        grad = add_scaled(xp, grad, buf, spec.momentum) if spec.nesterov else buf
    return add_scaled(xp, param, grad, -spec.lr), new_state


def _adam(xp, spec, param, grad, state, step):
    """torch/optim/adam.py ``_single_tensor_adam`` (amsgrad=False, capturable=False, differentiable=False)."""
    beta1, beta2 = spec.betas
    if spec.weight_decay != 0:
        if _kind(spec) == "adamw":
            param = param * _f32(param, 1 - spec.lr * spec.weight_decay)
        else:
            grad = add_scaled(xp, grad, param, spec.weight_decay)
    exp_avg = lerp(xp, state["exp_avg"], grad, 1 - beta1)
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2); addcmul is fmadd(value*t1, t2, self)
    exp_avg_sq = fma(xp, _f32(grad, 1 - beta2) * grad, grad, state["exp_avg_sq"] * _f32(grad, beta2))
    # Bias corrections are Python floats (float64) on the host, as torch computes them.
    bias_correction1 = 1 - beta1 ** float(step)
    bias_correction2 = 1 - beta2 ** float(step)
    step_size = spec.lr / bias_correction1
    bias_correction2_sqrt = math.sqrt(bias_correction2)
    # The temporaries below are fresh arrays, so each further op may write into its own input:
    # the same float32 ops in the same order, without allocating an array per op.
    denom = xp.sqrt(exp_avg_sq)
    denom /= _f32(param, bias_correction2_sqrt)
    denom += _f32(param, spec.eps)
    # param.addcdiv_(exp_avg, denom, value=-step_size): self + (value * t1) / t2
    change = exp_avg * _f32(param, -step_size)
    change /= denom
    same = isinstance(change, xp.ndarray) and change.shape == param.shape and change.dtype == param.dtype
    new_param = xp.add(param, change, out=change) if same else param + change
    return new_param, {**state, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def flops_per_element(spec: Any) -> int:
    """Element operations per parameter per update, for the cost model (counting an FMA as 2).

    SGD: the update ``p - lr*g`` is 2; weight decay adds 2 (``g + wd*p``); momentum adds 3
    (``buf*m``, then ``+ (1-d)*g``); Nesterov adds 2 (``g + m*buf``).
    Adam: lerp 3 (sub, fma), second moment 4 (mul, mul, fma), denominator 3 (sqrt, div, add),
    addcdiv 3 (mul, div, add) = 13; L2 weight decay adds 2, AdamW's decoupled decay adds 1.
    """
    if _kind(spec) == "sgd":
        flops = 2 + (2 if spec.weight_decay else 0)
        if spec.momentum:
            flops += 3 + (2 if spec.nesterov else 0)
        return flops
    decay = 0 if not spec.weight_decay else 1 if _kind(spec) == "adamw" else 2
    return 13 + decay


def mask_state(xp, state: dict[str, Any], keep) -> dict[str, Any]:
    """``state`` with every buffer zeroed where ``keep`` is False (weight sparsity: a masked
    weight's momentum / Adam moments must stay zero, or it would move again when regrown).
    A momentum buffer not created yet (None) stays None."""
    return {slot: None if value is None else xp.where(keep, value, xp.zeros((), dtype=value.dtype))
            for slot, value in state.items()}


# torch.nn.utils.clip_grad_norm_ adds this to the total norm so a zero gradient divides safely.
_CLIP_EPS = 1e-6


def clip_grad_norm(xp, grads: dict[str, Any], max_norm: float) -> dict[str, Any]:
    """``grads`` scaled as torch.nn.utils.clip_grad_norm_(params, max_norm) scales them: the
    2-norm of all gradients together, ``coef = max_norm / (total + 1e-6)`` clamped to 1, every
    gradient multiplied by it (also when it is 1, as torch does). Norms accumulate in float64
    and round to float32, as torch's CPU norm (acc_type double) does; a non-finite total
    makes every gradient non-finite, as in torch (error_if_nonfinite=False)."""
    norms = [xp.sqrt(xp.sum(xp.square(g.astype(xp.float64)))).astype(g.dtype) for g in grads.values()]
    if not norms:
        return dict(grads)
    stacked = xp.stack(norms).astype(xp.float64)
    dtype = norms[0].dtype
    total = xp.sqrt(xp.sum(stacked * stacked)).astype(dtype)
    coef = dtype.type(max_norm) / (total + dtype.type(_CLIP_EPS))
    coef = xp.minimum(coef, dtype.type(1.0))
    with np.errstate(invalid="ignore", over="ignore"):   # inf * 0 = NaN is torch's answer too;
        return {fqn: g * coef.astype(g.dtype) for fqn, g in grads.items()}  # the step reports it
