"""The measurement: what each core received and computed in one step, counted from its tensors,
and the step's cycles from those counts (`step.measure_step`).

- `context`: per-plan caches the trainer owns (`PlanContext`), and what a step hands the kernel
  kinds (`Runs`: the timing variants, positions, masked tiles);
- `positions`: which positions each kernel call works on (dynamic depth, real tokens);
- `step`: counts -> the one evaluation and schedule of `compiler` -> `StepTiming`;
- `compiled`: the same measurement compiled once per plan for steps without markers or masked
  weights whose kernels a kind counts straight into tables (a matmul with one token per
  sample) or counts without the data.
"""
from .context import PlanContext, Runs, variants
from .positions import DynamicStats, StepPositions, layout, step_positions
from .step import KernelTiming, StepTiming, measure_kernel, measure_step, own_variant

__all__ = ["PlanContext", "Runs", "variants", "DynamicStats", "StepPositions", "layout",
           "step_positions", "KernelTiming", "StepTiming", "measure_kernel", "measure_step",
           "own_variant"]
