"""The kernel library: group the graph's ops into kernels, each one of a registered kind.

Kinds (Hot Chips 2020, "Cerebras software": a library of hand-optimized kernels, and kernels
generated from loop nests), each one module implementing `base.KernelKind`:
- `matmul`: hand-optimized matmul family (nn.Linear and friends);
- `conv`: hand-optimized 1-D and 2-D convolutions on the ISPD 2020 contest's model (`conv.contest`,
  shared with `compiler.ispd`); pooling and BatchNorm are generated kernels;
- `attention`: hand-optimized scaled dot-product attention, forward and backward of one block;
- `generated`: any other op group, from an element-wise loop nest.
`KINDS` is the registry, found here: every module of this package that defines a module-level
`KIND` registers it, so a new kind is one new module. `build_kernels` asks the kinds in the
order of their `priority` which one an op group is; the last takes any group. Nothing else in
the tree switches on a kernel's kind: it looks the kind's model up with `kind_of(kernel)`.

A kernel whose weights are shared by recurrent steps (a Universal Transformer's block) is called
once per step: its `streams` hold one group per call (`Kernel.calls`).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cached_property

from ..ir import Graph, Op
from ..passes import VIEW_OPS, assign_kernels, attention_regions, param_root, pipeline_order
from ..steps import markers
from .attention import attention_kernel
from .base import ASSUMED, Access, Counts, Kernel, KernelKind, LoopNest, Variant, harvest_rows
from .generated import generated_kernel, generated_nest
from .matmul import matmul_kernel, matmul_nest


def _registered() -> dict[str, KernelKind]:
    """Every `KIND` of this package's modules, in the order `build_kernels` asks them."""
    found = [getattr(importlib.import_module(f"{__name__}.{m.name}"), "KIND", None)
             for m in pkgutil.iter_modules(__path__)]
    kinds = sorted((k for k in found if k is not None), key=lambda k: k.priority)
    return {kind.name: kind for kind in kinds}


KINDS: dict[str, KernelKind] = _registered()


def kind_of(kernel: Kernel) -> KernelKind:
    """The model of `kernel`'s kind."""
    return KINDS[kernel.kind]


@dataclass(frozen=True, eq=False)
class BuildContext:
    """What every kind's `build` may read about the graph: `samples` (the batch), `roots`
    (value -> parameter fqn, through views), `attention` (names of the attention regions),
    `spans` (forward op -> its marked span, `compiler.steps`)."""
    graph: Graph
    samples: int
    attention: frozenset = frozenset()
    spans: dict = field(default_factory=dict)

    @cached_property
    def roots(self) -> dict[str, str]:
        return param_root(self.graph)

    def params_of(self, name: str, ops: list[Op]) -> tuple[str, ...]:
        """Parameters the kernel updates in place: those its ops read (or view), and any other
        parameter of the module it is named after."""
        roots = self.roots
        params = tuple(dict.fromkeys(roots[o.name] for o in ops if o.name in self.graph.param_fqn
                                     or (o.op in VIEW_OPS and o.name in roots)))
        return params + tuple(f for v, f in self.graph.params
                              if f.rsplit(".", 1)[0] == name and f not in params)

    def param_numel(self, params: tuple[str, ...]) -> int:
        return sum(self.graph.type_of[v].numel for v, f in self.graph.params if f in params)


def build_kernels(graph: Graph) -> tuple[tuple[Kernel, ...], dict[str, str]]:
    """Kernels in pipeline order (first appearance in the forward pass) and op -> kernel."""
    kernel_of = assign_kernels(graph)
    order = pipeline_order(graph, kernel_of)
    first = graph.type_of[graph.inputs[0]].shape
    context = BuildContext(graph, first[0] if first else 1, frozenset(attention_regions(graph)),
                           _forward_spans(graph))
    kernels = tuple(_build(context, name, [op for op in graph.ops if kernel_of[op.name] == name])
                    for name in order)
    return kernels, kernel_of


def _build(context: BuildContext, name: str, ops: list[Op]) -> Kernel:
    for kind in KINDS.values():
        kernel = kind.build(context.graph, name, ops, context)
        if kernel is not None:
            return kernel
    raise AssertionError(f"the last kind in KINDS must accept any op group ({name!r})")


def _forward_spans(graph: Graph) -> dict[str, int]:
    """Forward op -> the marked span it lies in (`compiler.steps`); empty without markers."""
    found = markers(graph)
    if not found:
        return {}
    loss_at = next(i for i, op in enumerate(graph.ops) if graph.loss in op.outputs)
    return {op.name: found.segment[op.name] for op in graph.ops[:loss_at + 1]}


__all__ = ["KINDS", "kind_of", "build_kernels", "BuildContext", "Kernel", "KernelKind", "LoopNest",
           "Access", "Variant", "ASSUMED", "Counts", "attention_kernel", "matmul_kernel", "matmul_nest",
           "generated_kernel", "generated_nest", "harvest_rows"]
