"""A kernel's operands as the fabric program streams them, read off a training step: the
values its first call streams (x and dY of a matmul, the output of a generated kernel) and its
weight as the kernel multiplies it (the parameter through the kind's weight view,
`KernelKind.weight_view`), on the host.

The kinds do not yet say how a role's value is laid out (a matmul's dY may be captured
transposed); `WIDTH` names the nest dimension of each role that has one, so a transposed
capture can be told apart. (The kernel-kind protocol should expose this: see the report.)"""
from __future__ import annotations

import numpy as np

from compiler.kernels import kind_of

from ..backend import to_numpy
from ..ops import KERNELS

WIDTH = {"x": "i", "dy": "j"}       # role -> the nest dimension its last axis runs over


def check_samples(kernel, samples: int) -> None:
    if not 1 <= samples <= kernel.samples:
        raise ValueError(f"samples must be between 1 and the batch, {kernel.samples}; got {samples}")


def operands(xp, graph, kernel, env: dict, params: dict, samples: int) -> dict:
    """The kernel's streamed values `env` holds (role -> (samples, ...)) and, where its kind
    has a weight view, "w"."""
    check_samples(kernel, samples)
    out = {role: streamed(kernel, env, role, samples)
           for role, name in kernel.calls[0].items() if name in env}
    if kind_of(kernel).weight_view(graph, kernel) is not None:
        out["w"] = weight(xp, graph, kernel, params)
    return out


def streamed(kernel, env: dict, role: str, samples: int) -> np.ndarray:
    """(samples, tokens, features) the first `samples` samples of the value `role` the kernel's
    first call streams (`env`: the step's tensors by graph value). A dY captured as (N, B*T)
    (the dW matmul's operand) is turned to (B*T, N)."""
    name = kernel.calls[0].get(role)
    if name is None or name not in env:
        raise KeyError(f"the step's tensors have no {role} for kernel {kernel.name!r}: run a "
                       "training step first, so that its streamed operands are kept")
    check_samples(kernel, samples)
    value = to_numpy(env[name])
    laid_out = getattr(kind_of(kernel), "fabric_operand", None)
    if laid_out is not None:                 # the kind says how its operands are laid out
        return laid_out(kernel, role, value)[:samples]
    if role not in WIDTH:
        return value.reshape(kernel.samples, 1, -1)[:samples]
    width = kernel.nest.extent(WIDTH[role])
    if value.shape[-1] != width:
        value = value.T
    return value.reshape(kernel.samples, -1, width)[:samples]


def weight(xp, graph, kernel, params: dict) -> np.ndarray:
    """(K, N) the kernel's weight: its parameter (`params`, fqn -> array) through the view ops."""
    view = kind_of(kernel).weight_view(graph, kernel)
    if view is None:
        raise ValueError(f"kernel {kernel.name!r} has no weight view to stream against")
    fqn, ops = view
    value = xp.asarray(params[fqn])
    for op in ops:
        value = KERNELS[op.op](xp, value, *op.args[1:], **dict(op.kwargs))
    value = to_numpy(value)
    if tuple(value.shape) != tuple(kernel.nest.extents):
        raise ValueError(f"kernel {kernel.name!r}'s weight view has shape {value.shape}, not its "
                         f"extents {kernel.nest.extents}")
    return value
