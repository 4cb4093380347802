"""The op table: core-ATen numerics written once against an array module ``xp``; the one import point.

``OPS`` maps an ATen overload name, spelled as ``str(node.target)`` prints it, to
``fn(xp, *args, **kwargs)``. Tensors arrive as ``xp`` arrays; everything else as plain Python
values, with dtypes as NumPy dtype names ("float32"). Each kernel follows the formula of torch's
CPU kernel (aten/src/ATen/native/cpu/*.cpp in torch 2.13), including where torch's vectorized
code fuses a multiply-add, so that training matches torch eager within float32 rounding
(DESIGN.md, "Numerics contract"). Reduction order cannot be matched and is not attempted.

The kernels live in themed modules, imported here for their registrations:

- ``registry``: the table, ``run_op``, static specialization (``specialize``, ``Meta``) and
  torch's dtype promotion;
- ``shape``: views, copies, constants, indexing, gather/scatter, slicing, cat/split;
- ``pointwise``: arithmetic, comparisons, math, activations and their backwards, dropout;
- ``reduce``: sums, means, min/max, variance, softmax, the losses;
- ``nn``: matmuls, layer norm, embedding backward;
- any further ``simulator/ops/*.py`` (e.g. wsebench's own custom ops): found and imported here,
  so a new op module registers itself without an edit to this file.
"""
from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registers the module's kernels
from simulator.ops.pointwise import add_scaled, apply_dropout_mask, dropout_scale, lerp
from simulator.ops.registry import (
    KERNELS, KINDS, OPS, SPECIALIZERS, Meta, UnsupportedOpError, fma, run_op, specialize,
)

VIEW_OPS: frozenset[str] = frozenset(KINDS["view"])
ELEMENTWISE_OPS: frozenset[str] = frozenset(KINDS["elementwise"])
MATMUL_OPS: frozenset[str] = frozenset(KINDS["matmul"])

__all__ = [
    "OPS", "KERNELS", "SPECIALIZERS", "VIEW_OPS", "ELEMENTWISE_OPS", "MATMUL_OPS", "Meta",
    "UnsupportedOpError", "run_op", "specialize", "add_scaled", "fma", "lerp", "apply_dropout_mask",
    "dropout_scale",
]
