"""What every kernel kind shares: the loop nest, the `Kernel`, the timing `Variant`s, and the
`KernelKind` protocol each kind implements (one module per kind, `compiler.kernels`).

A kernel is a loop nest (Hot Chips 2020, "Cerebras software": kernels are hand-optimized or
generated from loop nests by unrolling loop dimensions across the fabric). Its mapping unrolls
`row_dim` over rows of cores and `col_dim` over columns (`compiler.mapping.Mapping`). From the
nest and the mapping each kind derives its memory per core and, from operation counts, its cost
components per core; `compiler.cost` turns components into cycles without knowing the kind.

Counts come from one of two places, and nothing else differs between the static estimate and the
measurement (DESIGN.md, "Cost model"):
- assumed: expected non-zeros from assumed densities (`KernelKind.assumed_counts`);
- measured: per sample and per core, from the tensors of a step (`KernelKind.measured_counts`).
The timing variants of one step (harvested, dense, fixed-depth, padded; `Variant`) are one axis:
`Counts.rows` (variants, samples) says which distinct counted sample each is, so a sample that
several variants share, or that every sample of a variant shares (the dense run of a matmul
counts every value whatever the data), is evaluated once.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Access:
    tensor: str
    dims: tuple[str, ...]
    role: str            # "resident" | "stream_in" | "stream_out"


@dataclass(frozen=True)
class LoopNest:
    dims: tuple[tuple[str, int], ...]
    accesses: tuple[Access, ...]
    row_dim: str
    col_dim: str
    reduce_dims: tuple[str, ...] = ()
    flops_per_point: int = 2

    def extent(self, dim: str) -> int:
        return self._extent_of[dim]

    @cached_property
    def _extent_of(self) -> dict[str, int]:
        # the timing asks for extents every step; a frozen nest's dims never change
        return dict(self.dims)

    @property
    def extents(self) -> tuple[int, int]:
        """The largest rows and cols the nest can unroll over."""
        return self.extent(self.row_dim), self.extent(self.col_dim)

    @property
    def one_dim(self) -> bool:
        """One dimension unrolled over both rows and cols (no more cores than its extent)."""
        return self.row_dim == self.col_dim

    def __str__(self) -> str:
        loops = ", ".join(d for d, _ in self.dims)
        reads = [a for a in self.accesses if a.role != "stream_out"]
        out = next(a for a in self.accesses if a.role == "stream_out")
        body = " * ".join(f"{a.tensor}[{','.join(a.dims)}]" for a in reads)
        op = "+=" if self.reduce_dims else "="
        return f"for {loops}: {out.tensor}[{','.join(out.dims)}] {op} {body}"


@dataclass(frozen=True)
class Kernel:
    name: str
    kind: str                              # a key of `compiler.kernels.KINDS`
    ops: tuple[str, ...]
    params: tuple[str, ...]                # parameters updated in place by this kernel
    nest: LoopNest
    # (role, graph value) pairs the simulator measures, one group per call of the kernel, each
    # group opening with the same role: a weight shared by S recurrent steps is called S times,
    # in forward order
    streams: tuple[tuple[str, str], ...]
    samples: int                           # the batch dimension of the step
    param_numel: int

    @cached_property
    def calls(self) -> tuple[dict[str, str], ...]:
        """The streams of each call, in forward order (a new call opens at each repeat of the
        first role)."""
        groups: list[dict[str, str]] = []
        lead = self.streams[0][0] if self.streams else None
        for role, value in self.streams:
            if role == lead or not groups:
                groups.append({})
            groups[-1][role] = value
        return tuple(groups) or ({},)

    @property
    def stream(self) -> dict[str, str]:
        """The streams of the first call."""
        return self.calls[0]

    @property
    def steps(self) -> int:
        """How many times a sample goes through the kernel (1 unless its weights are shared)."""
        return len(self.calls)


@dataclass(frozen=True)
class Variant:
    """One timing variant of a step: which positions it charges ("actual", "fixed_depth" or
    "padded", `simulator.measure.positions`) and whether zeros are skipped (`harvest`)."""
    name: str
    harvest: bool
    positions: str = "actual"


ASSUMED = (Variant("assumed", True),)


@dataclass(frozen=True, eq=False)
class Counts:
    """A kind's counts: `values`, its own fields (arrays whose first axis runs over the distinct
    counted samples), and `rows` (variants, samples), the distinct sample of each variant's
    sample."""
    values: Any
    rows: np.ndarray

    @classmethod
    def each(cls, values, variants: int, samples: int) -> "Counts":
        """`values` counted for every (variant, sample), variant-major."""
        return cls(values, np.arange(variants * samples).reshape(variants, samples))


@functools.lru_cache(maxsize=64)
def harvest_rows(harvest: tuple, samples: int) -> np.ndarray:
    """`Counts.rows` of counts with each sample counted, then one dense sample after them: a
    variant that skips zeros (`harvest`, one flag per variant) reads its samples, the others
    all the dense one (read-only, cached)."""
    rows = np.array([np.arange(samples) if h else np.full(samples, samples) for h in harvest])
    rows.flags.writeable = False
    return rows


class KindDefaults:
    """What most kinds share: no maskable weight, no zeros to harvest, calls governed one by one,
    no tabulated evaluation (`compiler.evaluate`)."""

    per_call_governors = True
    tabulate = None
    table_counter = None
    sample_cycles_grid = None

    @staticmethod
    def weight_view(graph, kernel: Kernel):
        return None

    @staticmethod
    def streamed(kernel: Kernel) -> dict[str, str]:
        return {}

    @staticmethod
    def passes_tokens_on(graph, kernel: Kernel, tokens: int) -> bool:
        return False


class KernelKind(Protocol):
    """One kind of kernel: how it is built from the graph, what it holds, what it counts and
    what that costs. `compiler.kernels.KINDS` maps each kind's name to its model."""

    name: str
    origin: str            # for the compile report: "hand-optimized", "generated from its loop nest"
    priority: int          # `build_kernels` asks the kinds in rising priority; the last takes any group

    def build(self, graph, name: str, ops: list, context) -> Kernel | None:
        """The kernel of op group `ops`, or None when the group is not of this kind."""

    def weights_per_core(self, kernel: Kernel, mapping, tiles=None):
        """Parameters resident on the most loaded core of one replica; with a masked weight's
        `tiles` (`mask_tiles`), the weights each core holds, (rows, cols)."""

    def weight_view(self, graph, kernel: Kernel):
        """(fqn, view ops) of the parameter whose mask (weight sparsity) reaches the kernel's
        resident tiles, or None when the kind keeps no maskable weight."""

    def passes_tokens_on(self, graph, kernel: Kernel, tokens: int) -> bool:
        """Whether a sample of `tokens` tokens can stream through the kernel token by token
        (`schedule.Streaming`); False: it needs the whole sample before it starts."""

    def mask_tiles(self, xp, host, mask, mapping):
        """The kind's per-core tiles of a (weight_view-shaped) keep-mask, with `.kept`
        (rows, cols) kept weights per core; only called when `weight_view` gives one."""

    def memory_per_core(self, kernel: Kernel, mapping, target, optimizer, in_flight: int,
                        kept: int | None = None) -> int:
        """Bytes on the most loaded core; `kept`: the most kept weights of a masked weight on
        one core (stored compressed), None when unmasked."""

    def dense_macs(self, kernel: Kernel) -> int:
        """Forward + backward MACs for one sample at full density."""

    def assumed_counts(self, kernel: Kernel, mapping, target, density, harvest: bool) -> Counts:
        """`Counts` of one sample at assumed `density` (x, dY), one variant."""

    def measured_counts(self, kernel: Kernel, mapping, env: dict, runs) -> Counts:
        """`Counts` per sample and core from the step's tensors in `env`, for every variant of
        `runs` (`simulator.measure.context.Runs`). Counts that cannot depend on the tensors may
        be the same object every step: the measurement then keeps the kernel's last timing."""

    def components(self, kernel: Kernel, values, mapping, target):
        """The cost components (`compiler.cost.Components`, distinct samples first) of the
        count `values` on `mapping`."""

    def governed(self, graph, kernel: Kernel, mask_shape: tuple[int, int]) -> list:
        """(op whose marker governs, how its mask applies) per call, for dynamic execution
        (`simulator.measure.positions`); `recurrent` tells whether the calls are steps."""

    def streamed(self, kernel: Kernel) -> dict[str, str]:
        """The streamed values ("x", "dy") whose zeros the kind harvests; empty if none."""

    # optional: `table_counter(kernel, mapping, target) -> compiler.table.Counter | None`, the
    # counts of `tabulate`'s table straight from a step's tensors (no markers, no masked weight)
    # optional: `tabulate(kernel, values, mapping, target) -> compiler.table.Table | None`, the
    # per-core cycles over every per-core input, when a core's cycles follow from them alone
    # optional: `sample_cycles_grid(kernel, rows, cols, target, density, harvest) -> array`,
    # `estimate.sample_cycles` of every rows x cols mapping at once (the mapping search's grid)
