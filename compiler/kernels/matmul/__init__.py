"""The matmul kernel kind: hand-optimized kernels for the matmul family (nn.Linear and friends).

Loop nest `for b, t, i, j: out[b, t, j] += x[b, t, i] * w[i, j]`; w stays resident, split into
ceil(K/rows) x ceil(N/cols) tiles, x streams in along rows (multicast), partial sums are
chained along the unrolled reduction dimension i (Hot Chips 2020 dataflow). Core (r, c) holding
w[I_r, J_c] does, per sample (DESIGN.md, "Cost model", sparsity harvesting):
  forward   MACs = nnz(x[b, I_r]) * |J_c|        in: x (zeros filtered)   out: |J_c| psums
  backward  dX MACs = nnz(dY[b, J_c]) * |I_r|    in: dY                   out: |I_r| psums
            dW MACs = nnz(x[b, I_r]) * nnz(dY[b, J_c])
summed over the tokens a sample sends. A masked weight is stored compressed and its cores skip
the masked entries too (`masked`). The first layer (no dx stream) has no dX pass.
Building: `build`; counts: `counts`; cost: `terms`.
"""
from __future__ import annotations

import math

from ... import cost
from ...passes import MATMUL_OPS
from ..base import Kernel
from . import counts as _counts
from . import terms as _terms
from .terms import computes_dx
from .build import build, matmul_kernel, matmul_nest, weight_view
from .masked import mask_tiles


class MatmulKind:
    name = "matmul"
    priority = 10     # build_kernels asks the kinds by priority
    origin = "hand-optimized"
    per_call_governors = True

    build = staticmethod(build)
    weight_view = staticmethod(weight_view)

    @staticmethod
    def mask_tiles(xp, host, mask, mapping):
        return mask_tiles(xp, host, mask, mapping.rows, mapping.cols)

    @staticmethod
    def weights_per_core(kernel: Kernel, mapping, tiles=None):
        """The weight tile plus its share of the bias (spread over a row of cores) on the
        fullest core; with a mask's `tiles`, per core (rows, cols): the kept weights plus the
        bias share."""
        k, n = kernel.nest.extent("i"), kernel.nest.extent("j")
        bias = math.ceil(max(kernel.param_numel - k * n, 0) / mapping.cols)
        if tiles is not None:
            return tiles.kept + bias
        return math.ceil(k / mapping.rows) * math.ceil(n / mapping.cols) + bias

    def memory_per_core(self, kernel: Kernel, mapping, target, optimizer, in_flight: int,
                        kept: int | None = None) -> int:
        """Weights with their gradient accumulator and optimizer state, plus the x tiles stashed
        for the samples between forward and backward, and the in/out buffers. A masked weight
        (`kept` on the fullest core) is stored compressed; the bias stays dense."""
        weights = self.weights_per_core(kernel, mapping)
        tk = math.ceil(kernel.nest.extent("i") / mapping.rows)
        tn = math.ceil(kernel.nest.extent("j") / mapping.cols)
        if kept is None:
            resident = cost.resident_bytes(weights, target, optimizer)
        else:
            resident = cost.resident_bytes(weights - tk * tn, target, optimizer) + \
                cost.compressed_weight_bytes(kept, tk, tn, target, optimizer)
        tokens = kernel.nest.extent("t")
        stash = tk * tokens
        buffers = tn * tokens + stash
        return int(resident + (in_flight * stash + buffers) * target.activation_bytes)

    @staticmethod
    def dense_macs(kernel: Kernel) -> int:
        n = kernel.nest
        passes = 3 if computes_dx(kernel) else 2
        return passes * n.extent("t") * n.extent("i") * n.extent("j")

    @staticmethod
    def assumed_counts(kernel: Kernel, mapping, target, density, harvest: bool):
        return _counts.assumed(kernel, mapping, density, harvest)

    @staticmethod
    def measured_counts(kernel: Kernel, mapping, env: dict, runs):
        return _counts.measured(kernel, mapping, env, runs)

    components = staticmethod(_terms.components)
    tabulate = staticmethod(_terms.tabulate)
    sample_cycles_grid = staticmethod(_terms.sample_cycles_grid)

    @staticmethod
    def table_counter(kernel: Kernel, mapping, target):
        return _counts.counter(kernel, mapping, _terms.grid_of(kernel, mapping, target))

    @staticmethod
    def governed(graph, kernel: Kernel, mask_shape) -> list:
        """Per call: its forward matmul, whose marker governs the call's token rows when its x
        has the mask's positions ([B*T, K] or [B, T, K]); a pooled input ([B, K]) has none."""
        batch, positions = mask_shape
        types, ops, out = graph.type_of, set(kernel.ops), []
        for call in kernel.calls:
            x = call["x"]
            forward = next((c.name for c in graph.consumers.get(x, [])
                            if c.name in ops and c.op in MATMUL_OPS), None)
            width = types[x].shape[-1] if types[x].shape else 1
            out.append((forward, "tokens" if types[x].numel == batch * positions * width else None))
        return out

    @staticmethod
    def streamed(kernel: Kernel) -> dict[str, str]:
        return {role: kernel.stream[role] for role in ("x", "dy") if role in kernel.stream}

    @staticmethod
    def passes_tokens_on(graph, kernel: Kernel, tokens: int) -> bool:
        """Each token's row of x is multiplied on its own: a layer applied to every token once
        streams them (a pooled head, with one row per sample, waits for the pooling)."""
        return kernel.nest.extent("t") == tokens


MATMUL = KIND = MatmulKind()

__all__ = ["MATMUL", "MatmulKind", "matmul_nest", "matmul_kernel", "computes_dx"]
