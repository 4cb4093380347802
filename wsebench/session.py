"""The public API's core: `compile` a torch training setup into a Session that trains on the wafer."""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Iterable

import numpy as np
import torch

from compiler import ConfigError, Plan, Target, compile_plan, wafer as _wafer
from compiler.frontend import capture, module_of_ops, optimizer_spec, optimizer_specs
from compiler.passes import run_pipeline
from simulator.backend import get_backend
from simulator.executor import unsupported_ops
from simulator.ops import UnsupportedOpError as _KernelMissing
from simulator.report import build_report
from simulator.training import NONFINITE_POLICIES, StepResult, Trainer

from . import checkpoint as _checkpoint
from . import contracts as _contracts
from . import densities as _densities
from . import sparsity as _sparsity
from .errors import NonFiniteError, NonFiniteWarning, UserError
from .metrics import accuracy
from .report import Report
from .sparsity import Sparsity
from .sparsity_report import DensityProbe, tracked_tensors, tensor_rows, weight_rows


class UnsupportedOpError(UserError, _KernelMissing):
    """The model uses an ATen op the wafer has no kernel for; names the op and its module."""

    def __init__(self, op: str, module: str):
        super().__init__(op)
        self.module = module

    def __str__(self) -> str:
        return (f"unsupported op: ATen op {self.op!r} from module {self.module!r} has no wafer "
                f"kernel. Replace that layer with a supported one, or register a kernel for the "
                f"op in one of simulator/ops/*.py (simulator/ops/__init__.py lists them)")


class History(list):
    """The StepResults of a `train` call, in order."""

    @property
    def losses(self) -> list[float]:
        return [r.loss for r in self]

    def plot(self, ax=None):
        from .plots import plot_history
        return plot_history(self, ax=ax)


class Session:
    """A model compiled for a wafer: `step`, `train`, `state_dict`, `report`, `plan`."""

    def __init__(self, plan: Plan, trainer: Trainer, model: torch.nn.Module, sparsity: Sparsity):
        self.plan, self._trainer, self._model, self.sparsity = plan, trainer, model, sparsity
        self.history = History()
        self._saved_report = None      # the last step's report, for a session loaded from disk
        self._forward = None           # its forward graph's signature (checkpoint.forward_signature)
        self._config = None            # the run's config, for a session loaded from a config run
        self._optimizer, self._group_of = None, {}   # the torch optimizer whose groups it follows
        self._labels = _contracts.label_rule(plan.graph)
        self._tracked = tracked_tensors(plan)
        # counts the followed tensors' non-zeros on each step's own values (for the report)
        trainer.executor = DensityProbe(trainer.executor, trainer.context,
                                        [t["tensor"] for t in self._tracked])

    @property
    def model(self) -> torch.nn.Module:
        """The torch model the wafer trains: the one given to `compile` with the sparsity's
        ReLUs and drop rules applied (the same object when the sparsity induces nothing)."""
        return self._model

    def _set_schedule(self) -> None:
        """Drop fractions in force for the coming step: graph inputs, so no recompilation."""
        xp = self._trainer.xp
        for fqn, value in _sparsity.scheduled_values(self._trainer.buffers, self.sparsity,
                                                     self._trainer.step_count).items():
            self._trainer.buffers[fqn] = xp.asarray(value)

    @property
    def step_count(self) -> int:
        """Optimizer updates applied so far (a step refused or skipped as non-finite applies none)."""
        return self._trainer.step_count

    def _forward_signature(self) -> str | None:
        if self._forward is None and isinstance(self._model, torch.nn.Module):
            graph = self.plan.graph
            self._forward = _checkpoint.forward_signature(self._model, graph.type_of[graph.inputs[0]])
        return self._forward

    @property
    def backend(self) -> str:
        return self._trainer.backend.name

    def step(self, x, y, dropout_masks=None) -> StepResult:
        """One training step on the batch (x, y). `dropout_masks` (keep-masks in forward order)
        replaces the host's own draw, e.g. to replay the masks torch drew."""
        masks = None if dropout_masks is None else [_numpy(m) for m in dropout_masks]
        x, y = _numpy(x), _numpy(y)
        _contracts.check_batch(self.plan.graph, x, y, self._labels, self._trainer.step_count + 1)
        self._set_schedule()
        self._read_param_groups()
        result, _ = self._trainer.step(x, y, masks)
        if self._optimizer is not None:
            # what torch's optimizer.step() marks: the wafer stepped it, so a scheduler stepped
            # after this step is in torch's order and must not warn that it came first
            self._optimizer._opt_called = True
        if result.nonfinite is not None:
            self._nonfinite(result)
        self.history.append(result)
        return result

    def _read_param_groups(self) -> None:
        """Each param group's hyperparameters as they are now, for the coming update: torch
        reads them on every step, so a scheduler's or the user's change of lr counts."""
        if self._optimizer is None:
            return
        groups = self._optimizer.param_groups
        # the settings as they stand; unchanged since the last step, nothing needs re-reading
        seen = tuple(tuple((k, repr(v)) for k, v in g.items() if k != "params") for g in groups)
        if seen == getattr(self, "_groups_seen", None):
            return
        if len(groups) != 1 + max(self._group_of.values(), default=0):
            raise ConfigError(f"the optimizer has {len(groups)} param groups, but the session was "
                              "compiled with another number; recompile after add_param_group")
        for i, group in enumerate(groups):
            _contracts.check_hyperparameters(group, f"optimizer param group {i}")
        self._trainer.set_hyperparameters(optimizer_specs(self._optimizer), self._group_of)
        self._groups_seen = seen

    def _nonfinite(self, result: StepResult) -> None:
        """Say what the trainer's on_nonfinite policy did with a non-finite step."""
        policy = self._trainer.on_nonfinite
        what = f"step {result.step}: the {result.nonfinite} is not finite (NaN or inf)"
        fix = ("clean the batch (e.g. torch.nan_to_num) or lower the learning rate / clip "
               "gradients; compile(..., on_nonfinite='skip') drops such steps, 'warn' applies them")
        if policy == "raise":
            raise NonFiniteError(f"{what}; the step was not applied and the session is as before "
                                 f"it. {fix}")
        done = "the update was skipped" if policy == "skip" else "the update was applied"
        warnings.warn(f"{what}; {done}", NonFiniteWarning, stacklevel=3)

    def train(self, batches: Iterable, steps: int | None = None, progress: bool = True,
              scheduler=None, clip_grad_norm: float | None | str = "compiled") -> History:
        """Train on `batches` ((x, y) pairs) for `steps` steps or until they run out. An
        interrupted run (Ctrl-C, or an error in the data) keeps every step it finished.
        `scheduler`: a torch.optim.lr_scheduler over the compiled optimizer, stepped after
        every step as a torch loop steps it (ReduceLROnPlateau with the step's loss).
        `clip_grad_norm`: the max 2-norm of these steps' gradients (None: no clipping), in place
        of the one compiled in."""
        from tqdm.auto import tqdm
        if steps is not None and (not isinstance(steps, int) or steps < 0):
            raise ConfigError(f"steps must be a non-negative integer or None, got {steps!r}")
        self._check_scheduler(scheduler)
        compiled = self._trainer.clip_grad_norm
        if clip_grad_norm != "compiled":
            _contracts.check_clip_grad_norm(clip_grad_norm)
            self._trainer.clip_grad_norm = None if clip_grad_norm is None else float(clip_grad_norm)
        done = History()
        size = len(batches) if hasattr(batches, "__len__") else None   # a list's steps count too
        total = steps if size is None else size if steps is None else min(steps, size)
        bar = tqdm(total=total, disable=not progress, desc="training on the wafer", unit="step")
        try:
            for i, (x, y) in enumerate(batches):
                if steps is not None and i >= steps:
                    break
                done.append(self.step(x, y))
                if scheduler is not None:
                    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                    scheduler.step(done[-1].loss) if plateau else scheduler.step()
                bar.update(1)
                bar.set_postfix(loss=f"{done[-1].loss:.4f}")
        except KeyboardInterrupt:
            bar.write(f"interrupted after {len(done)} steps; their results are kept")
        finally:
            bar.close()
            self._trainer.clip_grad_norm = compiled
        return done

    def _check_scheduler(self, scheduler) -> None:
        kinds = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if scheduler is None:
            return
        if not isinstance(scheduler, kinds):
            raise ConfigError(f"scheduler must be a torch.optim.lr_scheduler instance, got "
                              f"{type(scheduler).__name__}")
        if self._optimizer is None or scheduler.optimizer is not self._optimizer:
            raise ConfigError("the scheduler must be built over the optimizer given to "
                              "wb.compile; the session follows that optimizer's param groups")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers as torch tensors, same keys and shapes as model.state_dict().
        A tied name (nanoGPT's `lm_head.weight`) gets the trained value of the parameter it
        names; a parameter or buffer the session does not hold is an error, never its
        untrained value (only what training does not touch, e.g. `_extra_state`, is copied)."""
        arrays = self._trainer.state_numpy()
        tied = self.plan.graph.tied
        trained = _trained_names(self._model)
        out = {}
        for key, value in self._model.state_dict().items():
            name = tied.get(key, key)
            if name in arrays:
                out[key] = torch.from_numpy(np.array(arrays[name])).to(value.dtype).reshape(value.shape)
            elif key in trained:
                raise RuntimeError(f"the session holds no trained value for {key!r}; returning "
                                   "the model's would give it back untrained. This is a wsebench "
                                   "bug: please report it with the model")
            else:
                out[key] = value.detach().clone()
        return out

    def save(self, path, config: dict | None = None):
        """Write a checkpoint (plan, parameters, optimizer state, step count, RNG state, last
        report; `config`: the run's config) to `path`; `wb.load_session(path)` resumes it
        exactly. Returns the path."""
        return _checkpoint.save_session(self, path, config=config)

    def report(self) -> Report:
        if self._trainer.last_timing is None and self._saved_report is not None:
            return self._saved_report          # loaded from a checkpoint: its last step
        if self._trainer.last_timing is None:
            raise RuntimeError("no step has run yet: call session.step(x, y) or session.train(...) "
                               "before session.report()")
        probe = self._trainer.executor
        base = build_report(self.plan, self._trainer.last_timing, self.sparsity.harvest,
                            densities=probe.kernel_densities, tensors=self.tensor_densities())
        return Report(**dataclasses.asdict(base) | {"link_load": base.link_load})

    def tensor_densities(self) -> list[dict]:
        """Per followed tensor of the last step (drop outputs, ReLU outputs, masked weights):
        target density, actual density, module and kernel."""
        trainer = self._trainer
        values = {k: float(_numpy(v)) for k, v in trainer.buffers.items()
                  if k in _sparsity.drop_buffers(trainer.buffers, self.sparsity)}
        return tensor_rows(self._tracked, trainer.executor.counts, values,
                           weight_rows(trainer.weight_density(), trainer.params))

    def accuracy(self, x, y) -> float:
        """Accuracy on (x, y) of the torch model with the wafer's weights, in eval mode, with the
        drop fractions of the last step; token targets count real tokens only (labels equal to
        the ignore index, the padding, are left out), as `wsebench.metrics.accuracy` says."""
        return accuracy(self._model, self.state_dict(), x, y, self.sparsity,
                        max(self._trainer.step_count - 1, 0))


def _trained_names(model) -> set[str]:
    """Every name of the model's parameters and buffers, aliases included (none for the saved
    state a checkpoint loaded without its model stands in with)."""
    names = set()
    for method in ("named_parameters", "named_buffers"):
        if hasattr(model, method):
            names.update(n for n, _ in getattr(model, method)(remove_duplicate=False))
    return names


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def compile(model: torch.nn.Module, loss_fn: Callable, example: tuple, optimizer: Any,
            wafer: "str | Target" = "classroom", sparsity=None, mapping="auto", backend: str = "auto",
            seed: int = 0, capture_method: str = "auto", density: float = 1.0,
            densities="auto", on_nonfinite: str = "raise",
            clip_grad_norm: float | None = None) -> Session:
    """Capture, compile, map and place `model`'s training step; return a Session to train it.

    `densities`: the fraction of non-zeros in each matmul kernel's streamed x and dY that the
    plan is sized for (`wsebench.densities`). "auto" (default): when sparsity is configured
    (harvesting on, and a ReLU, dropout, a drop rule or weight sparsity makes zeros), run the
    step once on the example batch, measure them and size the kernels for the work they will
    really do; otherwise dense. "calibrate" always measures; "dense" (or None) assumes
    `density` for every kernel; a dict of kernel name -> (x density, dY density) gives them.
    `plan.summary()` says per kernel which densities it assumed and where they came from.
    `on_nonfinite`: what a step whose input, loss, gradient or update is NaN/inf does:
    "raise" (NonFiniteError naming the step and the tensor; the step is not applied),
    "warn" (applied, with a NonFiniteWarning) or "skip" (not applied, with a warning).
    `clip_grad_norm`: clip the gradients before every update as
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm) does (2-norm).
    Every step reads the optimizer's param groups (lr, weight decay, betas, momentum), so a
    torch lr scheduler over it, or a changed lr, takes effect as in torch."""
    target = _wafer(wafer)
    sparsity = Sparsity.parse(sparsity)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if on_nonfinite not in NONFINITE_POLICIES:
        raise ConfigError(f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got "
                          f"{on_nonfinite!r}")
    _contracts.check_example(example)
    _contracts.check_optimizer_covers(model, optimizer)
    if isinstance(optimizer, torch.optim.Optimizer):
        for i, group in enumerate(optimizer.param_groups):
            where = "optimizer" if len(optimizer.param_groups) == 1 else f"optimizer param group {i}"
            _contracts.check_hyperparameters(group, where)
    spec = optimizer_spec(optimizer)
    group_of = _group_of(model, optimizer)
    _contracts.check_clip_grad_norm(clip_grad_norm)
    chosen = _backend(backend)
    if sparsity.relu or sparsity.drop:
        applied = _sparsity.apply(model, sparsity)   # what the wafer trains; the original stays as is
        loss_fn = _follow(loss_fn, model, applied)
        model = applied
    with _contracts.capturing(example):
        graph = run_pipeline(capture(model, loss_fn, example, method=capture_method))
    _refuse_unsupported(graph, model, loss_fn, example)
    labels = _contracts.label_rule(graph)
    _contracts.check_classes(labels)
    if labels is not None:
        labels.check(_numpy(example[1]), "example batch")
    how = _densities.resolve(densities, density, graph, sparsity)
    given = how if isinstance(how, dict) else None
    plan = compile_plan(graph, target, spec, mapping=mapping, density=density, densities=given,
                        harvest=sparsity.harvest)
    params = {k: v.detach().cpu().numpy().copy() for k, v in model.named_parameters()}
    buffers = {k: v.detach().cpu().numpy().copy() for k, v in model.named_buffers()}
    build = lambda p: _trainer(p, params, buffers, chosen, sparsity, seed,  # noqa: E731
                               on_nonfinite, clip_grad_norm)
    if how == "calibrate":
        sized = lambda measured: compile_plan(graph, target, spec, mapping=mapping,  # noqa: E731
                                              density=density, densities=measured,
                                              harvest=sparsity.harvest)
        plan = _densities.calibrated(plan, build(plan), sized, _numpy(example[0]),
                                     _numpy(example[1]), keep_faster=densities == "auto")
    else:
        plan = _densities.record(plan, "given" if given else "dense", given or ())
    trainer = build(plan)
    session = Session(plan, trainer, model, sparsity)
    session._optimizer, session._group_of = optimizer, group_of
    session._read_param_groups()
    return session


def _group_of(model: torch.nn.Module, optimizer) -> dict[str, int]:
    """Parameter name -> index of the optimizer param group that holds it."""
    index = {id(p): i for i, group in enumerate(optimizer.param_groups) for p in group["params"]}
    return {name: index[id(p)] for name, p in model.named_parameters()}


def load_session(path, model=None, backend: str | None = None) -> Session:
    """Restore the Session saved at `path` (`Session.save`): plan, parameters, optimizer state,
    step count, RNG, sparsity and backend (`backend=` overrides it, e.g. "numpy" for a GPU
    checkpoint on a CPU).

    model: optional torch model or compiled Session to check the checkpoint against; a
    different model (or, for a Session, another captured graph) is refused with CheckpointError.
    """
    graph = model.plan.graph if isinstance(model, Session) else None
    module = model._model if isinstance(model, Session) else model
    saved = _checkpoint.restore(path, module, graph, backend)
    session = Session(saved["plan"], saved["trainer"], saved["model"], saved["sparsity"])
    session.history = History(saved["history"])
    session._saved_report, session._forward = saved["report"], saved["forward"]
    session._config = saved["config"]
    return session


def _follow(loss_fn, original, applied):
    """A loss that reads its model's last forward (`ut_loss`: the ponder cost) must read the
    copy the wafer trains, not the original that sparsity was applied to."""
    from .universal import PonderLoss
    if isinstance(loss_fn, PonderLoss) and loss_fn.model is original:
        return PonderLoss(applied, loss_fn.base)
    return loss_fn


def _trainer(plan, params, buffers, backend, sparsity: Sparsity, seed: int,
             on_nonfinite: str, clip_grad_norm: float | None) -> Trainer:
    masks = _sparsity.weight_sparsity(sparsity.weights)
    return Trainer(plan, params, buffers, backend, harvest=sparsity.harvest, seed=seed,
                   weight_sparsity=masks, on_nonfinite=on_nonfinite,
                   clip_grad_norm=None if clip_grad_norm is None else float(clip_grad_norm))


def _backend(name):
    """The array backend; one that cannot run here (CuPy without a GPU) is a ConfigError."""
    if not isinstance(name, str):
        raise ConfigError(f"backend must be 'auto', 'numpy' or 'cupy', got {name!r}")
    try:
        return get_backend(name)
    except (RuntimeError, ImportError, OSError) as err:
        raise ConfigError(f"backend {name!r}: {' '.join(str(err).split())}") from None


def _refuse_unsupported(graph, model, loss_fn, example) -> None:
    missing = unsupported_ops(graph)
    if not missing:
        return
    owners = module_of_ops(model, loss_fn, example)
    op = missing[0]
    owner = owners.get(op.name) or _nearest_owner(graph, op, owners)
    raise UnsupportedOpError(op.op, module=owner)


def _nearest_owner(graph, op, owners: dict) -> str:
    """A backward op has no module of its own: name the module of the forward value it reads."""
    for ref in op.refs():
        producer = graph.producer.get(ref)
        if producer is not None and producer.name in owners:
            return f"{owners[producer.name]} (backward)"
    return "the loss function" if owners else "unknown module"
