"""A kernel's operands as the fabric program streams them, read off a training step: the
streamed x of its first call and its weight as the kernel multiplies it (the parameter through
the kind's weight view, `KernelKind.weight_view`), on the host."""
from __future__ import annotations

import numpy as np

from compiler.kernels import kind_of

from ..backend import to_numpy
from ..ops import KERNELS


def streamed_x(kernel, env: dict, samples: int) -> np.ndarray:
    """(samples, tokens, K) the first `samples` samples of the x the kernel's first call streams
    (`env`: the step's tensors by graph value)."""
    name = kernel.calls[0].get("x")
    if name is None or name not in env:
        raise KeyError(f"the step's tensors have no x for kernel {kernel.name!r}: run a training "
                       "step first, so that its streamed operands are kept")
    x = to_numpy(env[name])
    x = x.reshape(kernel.samples, -1, x.shape[-1])
    if not 1 <= samples <= kernel.samples:
        raise ValueError(f"samples must be between 1 and the batch, {kernel.samples}; got {samples}")
    return x[:samples]


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
