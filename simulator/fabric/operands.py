"""A kernel's operands as the fabric program streams them, read off a training step: the
streamed x and dY of its first call and its weight as the kernel multiplies it (the parameter through
the kind's weight view, `KernelKind.weight_view`), on the host."""
from __future__ import annotations

import numpy as np

from compiler.kernels import kind_of

from ..backend import to_numpy
from ..ops import KERNELS


def streamed(kernel, env: dict, role: str, samples: int) -> np.ndarray:
    """(samples, tokens, features) the first `samples` samples of the operand `role` ("x" or
    "dy") the kernel's first call streams (`env`: the step's tensors by graph value). A dY
    captured as (N, B*T) (the dW matmul's operand) is turned to (B*T, N)."""
    name = kernel.calls[0].get(role)
    if name is None or name not in env:
        raise KeyError(f"the step's tensors have no {role} for kernel {kernel.name!r}: run a "
                       "training step first, so that its streamed operands are kept")
    if not 1 <= samples <= kernel.samples:
        raise ValueError(f"samples must be between 1 and the batch, {kernel.samples}; got {samples}")
    value = to_numpy(env[name])
    width = kernel.nest.extent("i" if role == "x" else "j")
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
