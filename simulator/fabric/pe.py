"""The processing element of every core: tasks activated by wavelets, the SIMD datapath and the
SRAM ports, with constants from `compiler.target.Target` (the ones the analytic model uses).

- **Tasks**: the ramp delivers each wavelet into the PE's queue of its colour; a wavelet at the
  head of a queue activates that colour's task once the program says it is ready (a task can
  wait on another, as a partial sum waits for the core's own product). A free PE starts one
  task per cycle, the first ready colour in the program's priority order (Cerebras SDK: data
  arriving on a colour activates a task; a task can be blocked and unblocked). What a task
  makes (a sum to send, the end of a sample) counts only from the cycle it finishes.
- **Cost of a task**: `Target.task_cycles` to activate it (per wavelet received), then its
  vector work, and at least one cycle: a PE takes one wavelet per cycle at most.
- **Fabric-input operands** (`Datapath.streamed`): an operation that reads a stream straight
  off the fabric (a fabin DSD operand, e.g. `@fadds(y, y, in_dsd)` adding arriving partial
  sums: Cerebras csl-examples, tutorials/gemv-06-routes) is one asynchronous operation over
  the whole vector, so a wavelet it consumes activates no task: only its datapath cycles count.
- **Vector work** (`Datapath.fmac`): an FMAC over n elements with a scalar operand takes
  ceil(n / simd) cycles of the SIMD lanes (`Target.simd`, Hot Chips 2020), unless the SRAM
  ports are slower: each element reads two `value_bits` operands and writes one through
  `Target.sram_read_bytes` / `sram_write_bytes` per cycle (Hot Chips 2019). The extra cycles are
  counted as SRAM time.
"""
from __future__ import annotations

from typing import NamedTuple

from .queues import Queues


class Work(NamedTuple):
    """Cycles a task keeps the PE busy, per core: SIMD, SRAM beyond the SIMD, activation."""
    simd: object
    sram: object
    task: object


class Datapath:
    """The PE's datapath constants, read off `target`."""

    def __init__(self, xp, target):
        self.xp, self.target = xp, target

    def fmac(self, xp, n) -> Work:
        """One vector FMAC (or add) over `n` elements per core: its SIMD cycles and the SRAM
        cycles beyond them (two operands read and one written per element)."""
        t = self.target
        simd = -(-n // t.simd)
        # ceil(bits moved / bits a cycle), in integers (exact, and cheaper over a whole fabric)
        ports = xp.maximum(-(-2 * n * t.value_bits // (8 * t.sram_read_bytes)),
                           -(-n * t.value_bits // (8 * t.sram_write_bytes)))
        return Work(simd, xp.maximum(ports - simd, 0), xp.zeros_like(simd))

    def task(self, xp, work: Work, mask, activate: bool = True) -> Work:
        """`work` where `mask` (zero elsewhere), plus the activation of the task (none for an
        operation on a fabric-input operand: `streamed`)."""
        zero = xp.zeros_like(work.simd)
        return Work(xp.where(mask, work.simd, zero), xp.where(mask, work.sram, zero),
                    xp.where(mask, self.target.task_cycles if activate else 0, zero))

    def streamed(self, xp, work: Work, mask) -> Work:
        """`work` of an operation whose operand is read off the fabric (a fabin DSD): the
        wavelet feeds the running operation and activates no task (csl-examples, gemv-06)."""
        return self.task(xp, work, mask, activate=False)


class PE:
    """The PEs of a region: a queue per colour (colours, rows, cols), the cycles left of the
    running task, and per colour the work it did (colours, 3, rows, cols): SIMD, SRAM, task.
    Per-core state is int32 (int8 the running task's colour): compact over a whole wafer."""

    def __init__(self, xp, colours: int, region: tuple, depth: int, values: int):
        self.xp = xp
        self.queues = Queues(xp, (colours,) + tuple(region), depth, values)
        self.busy = xp.zeros(region, dtype=xp.int32)
        self.colour = xp.zeros(region, dtype=xp.int8)      # of the running task
        self.work = xp.zeros((colours, 3) + tuple(region), dtype=xp.int32)
        self.waiting = xp.zeros(region, dtype=xp.int32)     # free, a wavelet queued, none ready
        self.idle = xp.zeros(region, dtype=xp.int32)        # free, nothing queued

    def step(self, program) -> None:
        """Start a task on every free PE that has a ready wavelet, count down a cycle, and tell
        the program which tasks finished (`program.complete`): their results count from now."""
        xp, q = self.xp, self.queues
        free = self.busy == 0
        heads = q.peek()
        queued = q.count > 0
        chosen = xp.zeros(q.shape, dtype=bool)
        taken = ~free
        for colour in program.priority:
            ok = ~taken & queued[colour] & program.ready(colour, heads)
            chosen[colour] = ok
            taken = taken | ok
        started = taken & free
        self.waiting += free & ~started & queued.any(axis=0)
        self.idle += free & ~queued.any(axis=0)
        for colour in program.priority:
            mask = chosen[colour]
            work = program.run(colour, heads, mask)
            for k, part in enumerate(work):
                self.work[colour, k] += part
            self.busy[...] = xp.where(mask, xp.maximum(work.simd + work.sram + work.task, 1), self.busy)
            self.colour[...] = xp.where(mask, colour, self.colour)
        q.pop(chosen)
        done = self.busy == 1
        self.busy[...] = xp.maximum(self.busy - 1, 0)
        for colour in program.priority:
            program.complete(colour, done & (self.colour == colour))
