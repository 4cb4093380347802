"""The training loop on the simulated wafer: numerics on `xp`, timing measured from the data.

One `Trainer.step` runs the captured joint graph (forward, loss, backward), applies the
optimizer update kernel to every parameter in place, and times the step from the tensors it
produced. Dropout masks are drawn on the host (or supplied, e.g. the masks torch drew).
A model with `running` markers (dynamic depth, real tokens) is charged only for the positions
that compute; its StepResult also carries the fixed-depth and padded baselines of the same step
(`simulator.measure`).

With `weight_sparsity` (`simulator.weight_sparsity.WeightSparsity`) the selected weights carry
masks: applied to the initial parameters at construction, kept after every optimizer update
(weights and optimizer state zeroed where masked), updated on the config's schedule, and
handed to the timing so the wafer skips and compresses the masked weights.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from compiler.plan import Plan

from . import optim
from .backend import Backend, is_cupy, to_numpy
from .executor import Executor
from .measure import PlanContext, StepTiming, measure_step
from .weight_sparsity import WeightSparsity, WeightSparsityEngine

NONFINITE_POLICIES = ("raise", "warn", "skip")


@dataclass(frozen=True)
class StepResult:
    """One training step: the loss and what the wafer took to run it (simulated time)."""
    step: int
    loss: float
    cycles: float
    dense_cycles: float
    seconds: float
    samples_per_s: float
    utilization: float          # mean busy fraction over the cores the plan allocates
    # the same step's baselines (simulator.dynamic_timing); None in results saved before them
    fixed_depth_cycles: float | None = None   # every real position runs every recurrent step
    padded_cycles: float | None = None        # pad tokens streamed like real ones
    mean_ponder_steps: float | None = None    # recurrent steps a real position ran (None: none)
    padding_fraction: float | None = None     # share of the batch's positions that are pads
    # the first non-finite tensor of the step ("loss", "gradient of 'fc1.weight'", ...), or None
    nonfinite: str | None = None

    @property
    def harvest_speedup(self) -> float:
        return self.dense_cycles / self.cycles if self.cycles else 1.0

    @property
    def speedup_vs_fixed_depth(self) -> float:
        """Fixed depth (max steps for every position) over the dynamic-depth run: 1 without
        recurrence."""
        return (self.fixed_depth_cycles or self.cycles) / self.cycles if self.cycles else 1.0

    @property
    def speedup_vs_padded(self) -> float:
        """The padded run over the run that streams real tokens only."""
        return (self.padded_cycles or self.cycles) / self.cycles if self.cycles else 1.0


class Trainer:
    def __init__(self, plan: Plan, params: dict[str, np.ndarray], buffers: dict[str, np.ndarray],
                 backend: Backend, harvest: bool = True, seed: int = 0,
                 weight_sparsity: WeightSparsity | None = None,
                 weight_sparsity_state: tuple[dict, dict] | None = None,
                 on_nonfinite: str = "raise", clip_grad_norm: float | None = None):
        """`weight_sparsity_state`: what `weight_sparsity_state()` returned for a checkpoint;
        the masks, targets and RNG resume from it instead of drawing initial masks.
        `on_nonfinite`: a step with a non-finite input, loss, gradient or update is applied
        only under "warn"; under "raise" the trainer is left as before the step (RNG included),
        under "skip" the update is dropped. Its StepResult names the tensor (`nonfinite`).
        `clip_grad_norm`: scale the gradients as torch.nn.utils.clip_grad_norm_(params, it)
        before every update (None: no clipping). Every parameter trains with `plan.optimizer`
        until `set_hyperparameters` gives per-group specs (param groups, an lr scheduler)."""
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, "
                             f"got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.plan, self.backend, self.harvest = plan, backend, harvest
        self.context = PlanContext(plan)       # the measurement's per-plan caches
        xp = self.xp = backend.xp
        graph = plan.graph
        # a step's other intermediates are dropped once used (`Executor`, `keep`)
        self.executor = Executor(graph, xp, keep=self.context.measured_values | {
            graph.loss, *graph.inputs, *(g for _, g in graph.grads),
            *graph.buffer_updates.values()})
        self.params = {fqn: xp.asarray(v) for fqn, v in params.items()}
        self.buffers = {fqn: xp.asarray(v) for fqn, v in buffers.items()}
        self.clip_grad_norm = clip_grad_norm
        self.group_specs, self.group_of = [plan.optimizer], {}
        self.opt_state = {fqn: optim.init_state(xp, plan.optimizer, p) for fqn, p in self.params.items()}
        self.step_count = 0
        self.rng = np.random.default_rng(seed)
        self.last_timing: StepTiming | None = None
        self.weight_sparsity = weight_sparsity
        self._sparse: WeightSparsityEngine | None = None
        if weight_sparsity is not None:
            maskable = {fqn for fqn, _ in self.context.weight_views.values()}
            self._sparse = WeightSparsityEngine(weight_sparsity, xp, self.params, maskable)
            if weight_sparsity_state is not None:
                self._sparse.restore(*weight_sparsity_state)
            self._sparse.apply(self.params, self.opt_state)
        elif weight_sparsity_state is not None:
            raise ValueError("weight_sparsity_state needs weight_sparsity: pass "
                             "weight_sparsity=WeightSparsity.from_dict(state[0]['config'])")

    def set_hyperparameters(self, group_specs: list, group_of: dict[str, int]) -> None:
        """The optimizer spec of each param group and each parameter's group, in force from
        the next step on (torch reads its param_groups on every step, so a scheduler's or the
        user's new lr counts from the next update). The kind cannot change: the state is its."""
        kinds = {spec.kind for spec in group_specs}
        if kinds != {self.plan.optimizer.kind}:
            raise ValueError(f"optimizer kinds {sorted(kinds)} differ from the plan's "
                             f"{self.plan.optimizer.kind!r}; recompile to change optimizer")
        unknown = [fqn for fqn, i in group_of.items() if fqn not in self.params or
                   not 0 <= i < len(group_specs)]
        if unknown:
            raise ValueError(f"group_of names unknown parameters or groups: {unknown[:3]}")
        for fqn, i in group_of.items():
            if not self.opt_state[fqn]:      # e.g. SGD momentum turned on: state starts now
                self.opt_state[fqn] = optim.init_state(self.xp, group_specs[i], self.params[fqn])
        self.group_specs, self.group_of = list(group_specs), dict(group_of)

    def spec_of(self, fqn: str):
        """The optimizer spec the parameter `fqn` updates with."""
        return self.group_specs[self.group_of.get(fqn, 0)]

    @property
    def weight_masks(self) -> dict:
        """fqn -> bool keep-mask (shaped like the parameter) of every sparsified weight; empty
        without weight sparsity."""
        return dict(self._sparse.masks) if self._sparse is not None else {}

    def weight_density(self) -> dict[str, dict[str, float]]:
        """fqn -> {"target", "actual", "nonzero"} density of every sparsified weight (see
        `WeightSparsityEngine.density`); empty without weight sparsity."""
        return self._sparse.density(self.params) if self._sparse is not None else {}

    def weight_sparsity_state(self) -> tuple[dict, dict] | None:
        """(JSON-able metadata, fqn -> NumPy mask) for a checkpoint, or None without weight
        sparsity; `Trainer(..., weight_sparsity_state=...)` resumes from them."""
        return self._sparse.state() if self._sparse is not None else None

    def draw_masks(self) -> list[np.ndarray]:
        """Keep-masks with P(keep) = 1 - p, as torch's bernoulli_(1 - p)."""
        types = self.plan.graph.type_of
        return [self.rng.random(types[name].shape) >= p for name, p in self.plan.graph.masks]

    def _environment(self, x, y, masks) -> dict:
        g, xp = self.plan.graph, self.xp
        if len(masks) != len(g.masks):
            raise ValueError(f"expected {len(g.masks)} dropout masks, got {len(masks)}")
        env = {g.inputs[0]: xp.asarray(x), g.inputs[1]: xp.asarray(y)}
        env.update({name: self.params[fqn] for name, fqn in g.params})
        env.update({name: self.buffers[fqn] for name, fqn in g.buffers})
        for (name, _), mask in zip(g.masks, masks):
            env[name] = xp.asarray(mask, dtype=bool)
        return env

    def calibrate_densities(self, x, y) -> dict[str, tuple[float, float]]:
        """Run the step's numerics once (no update, no RNG draw kept) and measure, per matmul
        kernel, the fraction of non-zeros in its streamed x and dY."""
        return self.context.densities(self.xp, self.example_env(x, y))

    def example_env(self, x, y) -> dict:
        """The step's tensors on batch (x, y): its numerics run once, no update applied and no
        RNG draw kept (for calibration, and for timing other plans of the same graph)."""
        self._check_batch(x, y)
        state = self.rng.bit_generator.state
        env = self.executor.run(self._environment(x, y, self.draw_masks()))
        self.rng.bit_generator.state = state
        return env

    def example_cycles(self, plan: Plan, env: dict) -> float:
        """Measured cycles of the step whose tensors are `env` (`example_env`) on `plan`, a plan
        of this trainer's graph (e.g. one sized for other densities), harvesting as this run."""
        used = self.weight_masks if self._sparse is not None else None
        return measure_step(PlanContext(plan), self.xp, env, self.harvest, weight_masks=used).cycles

    def _check_batch(self, x, y) -> None:
        types = self.plan.graph.type_of
        for name, value in zip(self.plan.graph.inputs, (x, y)):
            if tuple(np.shape(value)) != types[name].shape:
                raise ValueError(f"batch shape {tuple(np.shape(value))} differs from the example "
                                 f"the plan was compiled for, {types[name].shape}; recompile with "
                                 "an example of this shape")

    def step(self, x, y, masks=None) -> tuple[StepResult, StepTiming]:
        self._check_batch(x, y)
        rng_state = self.rng.bit_generator.state
        env = self.executor.run(self._environment(x, y, self.draw_masks() if masks is None else masks))
        # timed first, while the step's tensors are fresh, with the masks it computed with
        used = self.weight_masks if self._sparse is not None else None
        timing = measure_step(self.context, self.xp, env, self.harvest, weight_masks=used)
        grads = {fqn: env[grad_name] for fqn, grad_name in self.plan.graph.grads}
        if self.clip_grad_norm is not None:
            grads = optim.clip_grad_norm(self.xp, grads, self.clip_grad_norm)
        updated = {fqn: optim.update(self.xp, self.spec_of(fqn), self.params[fqn], grad,
                                     self.opt_state[fqn], self.step_count + 1)
                   for fqn, grad in grads.items()}
        problem = first_nonfinite(self.xp, self.plan.graph, env, updated)
        loss = float(to_numpy(env[self.plan.graph.loss]))
        if problem is not None and self.on_nonfinite != "warn":
            if self.on_nonfinite == "raise":          # as if the step had not been asked for
                self.rng.bit_generator.state = rng_state
            else:
                self.last_timing = timing
            return self._result(loss, timing, self.step_count + 1, problem), timing
        self.last_timing = timing
        self.step_count += 1
        for fqn, (param, state) in updated.items():
            self.params[fqn], self.opt_state[fqn] = param, state
        for fqn, value in self.plan.graph.buffer_updates.items():   # BatchNorm's running stats
            self.buffers[fqn] = env[value]
        if self._sparse is not None:
            grads = {fqn: env[g] for fqn, g in self.plan.graph.grads if fqn in used}
            self._sparse.after_update(self.step_count, self.params, self.opt_state, grads)
        return self._result(loss, timing, self.step_count, problem), timing

    def _result(self, loss: float, timing: StepTiming, step: int, nonfinite: str | None) -> StepResult:
        clock = self.plan.target.clock_hz
        samples = self.plan.kernels[0].samples
        busy = timing.busy_total
        cores = self.context.cores
        seconds = timing.cycles / clock
        return StepResult(step, loss, timing.cycles, timing.dense_cycles, seconds,
                          samples / seconds if seconds else 0.0,
                          busy / (cores * timing.cycles) if cores and timing.cycles else 0.0,
                          _or(timing.fixed_depth_cycles, timing.cycles),
                          _or(timing.padded_cycles, timing.cycles),
                          timing.dynamic.mean_ponder_steps if timing.dynamic else None,
                          timing.dynamic.padding_fraction if timing.dynamic else None, nonfinite)

    def state_numpy(self) -> dict[str, np.ndarray]:
        return {fqn: to_numpy(v) for fqn, v in {**self.params, **self.buffers}.items()}


def first_nonfinite(xp, graph, env: dict, updated: dict) -> str | None:
    """The first non-finite tensor of a step, in the order a NaN spreads (float inputs, loss,
    gradients, updated parameters), or None.

    The common, finite case costs one reduction per tensor and one device sync: a non-finite
    gradient always makes its update non-finite (lr * NaN and 0 * inf are NaN), so only the
    inputs, the loss and the updates are reduced (`_all_finite`)."""
    inputs = [(f"input {n}", env[v]) for n, v in zip("xy", graph.inputs)
              if xp.asarray(env[v]).dtype.kind == "f"]
    updates = [(f"update of parameter {fqn!r}", p) for fqn, (p, _) in updated.items()]
    if _all_finite(xp, [t for _, t in inputs] + [env[graph.loss]] + [p for _, p in updates]):
        return None
    tensors = inputs + [("loss", env[graph.loss])]
    tensors += [(f"gradient of parameter {fqn!r}", env[g]) for fqn, g in graph.grads] + updates
    return next((what for what, t in tensors if not bool(xp.isfinite(t).all())), None)


def _all_finite(xp, tensors) -> bool:
    """Whether every value of every tensor is finite. On NumPy each tensor's dot product with
    zeros: 0 * x is 0 for every finite x and NaN for NaN and inf, and BLAS does it about 2.5x
    faster than a sum. On CuPy `0 * sum` of one stacked reduction (one device sync); a sum that
    overflows only sends the step to the exact search."""
    if is_cupy(xp):
        return bool(xp.isfinite(xp.sum(xp.stack([xp.sum(t) for t in tensors])) * 0))
    with np.errstate(over="ignore", invalid="ignore"):   # the NaN is the answer here
        return math.isfinite(sum(float(np.dot(np.ravel(t), _zeros(np.size(t), np.result_type(t))))
                                 for t in tensors))


@functools.lru_cache(maxsize=256)
def _zeros(size: int, dtype) -> np.ndarray:
    zeros = np.zeros(size, dtype=dtype)
    zeros.flags.writeable = False
    return zeros


def _or(value, default):
    return default if value is None else value
