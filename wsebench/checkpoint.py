"""Checkpoints: a Session saved to one file, and restored later without its torch model.

    s.save("run.ckpt")                        # after some training
    s = wb.load_session("run.ckpt")           # tomorrow: same plan, weights, optimizer, RNG
    s.train(more_batches, steps=10)           # == training without the interruption

A checkpoint is one .npz file (written atomically: temporary file, then `os.replace`). Its
arrays are the parameters, buffers and optimizer state; its "__meta__" member holds JSON: the
format name and version, the plan (`Plan.to_json`), the step count, the dropout RNG's
`bit_generator.state`, the sparsity (harvest) setting and backend, the model's state_dict keys,
shapes and dtypes, a signature of its forward graph, the step history and the last step's
report, the run's config (when a config run saved it), a fingerprint of the captured graph, a
SHA-256 over the arrays, and a SHA-256 over all of that metadata (so an edited step count is
caught like a flipped bit). Loading refuses, with an error naming the file: damaged files
(truncated, corrupted, checksum mismatch), other format versions, and, when `model=` is given,
a checkpoint saved from a different model (other parameter names or shapes, another forward
graph, e.g. another activation or dropout; for a Session, another captured training graph).

The data is the caller's: resume with the batches that come after the `len(s.history)` steps
already taken (e.g. `itertools.islice(batches, len(s.history), None)` for a fresh
`wb.data.batches` iterator); `s.step_count` counts the updates applied (a step skipped under
`on_nonfinite="skip"` took a batch but applied none).
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import warnings
from dataclasses import asdict
from pathlib import Path

from .errors import UserError
from .store import canonical

import numpy as np
import torch

FORMAT = "wsebench-checkpoint"
VERSION = 1
_META = "__meta__"
_REQUIRED = ("plan", "graph_sha256", "step_count", "rng", "harvest", "sparsity", "backend",
             "model_state", "params", "buffers", "optimizer_state", "history")
_REPORT_ARRAYS = ("core_utilization", "sram_per_core", "kernel_grid")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""

    def __init__(self, path, problem: str):
        super().__init__(f"checkpoint {str(path)!r}: {problem}")
        self.path, self.problem = Path(path), problem


def graph_fingerprint(graph) -> str:
    from compiler.serialize import graph_to_dict
    return hashlib.sha256(json.dumps(graph_to_dict(graph), sort_keys=True).encode()).hexdigest()


def state_spec(model) -> dict:
    """{key: {"shape": [...], "dtype": "float32"}} of `model.state_dict()`."""
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in model.state_dict().items()}


def meta_digest(meta: dict) -> str:
    """SHA-256 of the metadata (itself left out), which holds the arrays' SHA-256 too."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def forward_signature(model, x_type) -> str | None:
    """SHA-256 of the model's forward graph (ATen ops and their constant arguments, in order)
    on an input of `x_type`: two models with the same parameter shapes but another activation
    or dropout rate differ. None when torch.export cannot trace the forward alone."""
    dtype = getattr(torch, x_type.dtype)
    x = torch.zeros(x_type.shape, dtype=dtype)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.export.export(model, (x,)).graph
    except Exception:  # noqa: BLE001 - a model export cannot trace: no signature, said on load
        return None
    ops = [f"{node.target}{[a for a in node.args if not isinstance(a, torch.fx.Node)]}"
           for node in graph.nodes if node.op == "call_function"]
    return hashlib.sha256("\n".join(ops).encode()).hexdigest()


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_session(session, path, config: dict | None = None) -> Path:
    """Write `session`'s checkpoint to `path` (the exact file name given); return the path.
    `config`: the run's config, kept so that a resume can check it is the same run."""
    from simulator.backend import to_numpy

    from . import __version__
    from .store import atomic_write
    trainer, path = session._trainer, Path(path)
    arrays = {f"param/{k}": to_numpy(v) for k, v in trainer.params.items()}
    arrays.update({f"buffer/{k}": to_numpy(v) for k, v in trainer.buffers.items()})
    slots = {}
    for fqn, state in trainer.opt_state.items():
        slots[fqn] = {}
        for slot, value in state.items():
            slots[fqn][slot] = None if value is None else "array"
            if value is not None:
                arrays[f"opt/{fqn}/{slot}"] = to_numpy(value)
    masks = trainer.weight_sparsity_state()
    if masks is not None:
        arrays.update({f"wmask/{k}": v for k, v in masks[1].items()})
    model_state = session._model.state_dict()
    held = set(trainer.params) | set(trainer.buffers)
    arrays.update({f"extra/{k}": v.detach().cpu().numpy() for k, v in model_state.items()
                   if k not in held})
    meta = {"format": FORMAT, "version": VERSION, "wsebench": __version__,
            "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "plan": session.plan.to_json(), "graph_sha256": graph_fingerprint(session.plan.graph),
            "step_count": trainer.step_count, "rng": trainer.rng.bit_generator.state,
            "harvest": trainer.harvest, "sparsity": session.sparsity.to_dict(),
            "weight_sparsity": None if masks is None else masks[0],
            "backend": session.backend, "model_state": state_spec(session._model),
            "params": list(trainer.params), "buffers": list(trainer.buffers),
            "optimizer_state": slots, "history": [asdict(r) for r in session.history],
            "optimizer_groups": [spec.to_dict() for spec in trainer.group_specs],
            "group_of": trainer.group_of, "clip_grad_norm": trainer.clip_grad_norm,
            "forward_sha256": session._forward_signature(),
            "config": None if config is None else canonical(config)}
    meta["report"] = _report_meta(session, arrays)
    meta["arrays_sha256"] = _digest(arrays)
    meta["meta_sha256"] = meta_digest(meta)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, **{_META: np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buf.getvalue())
    return path


def _read(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:  # BadZipFile, zlib.error, EOFError, ValueError, ...
        raise CheckpointError(path, f"truncated or corrupted, cannot be read "
                                    f"({type(err).__name__}: {err})") from None
    if _META not in arrays:
        raise CheckpointError(path, "not a wsebench checkpoint (no metadata)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(path, f"corrupted metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(path, "not a wsebench checkpoint")
    if meta.get("version") != VERSION:
        from . import __version__
        raise CheckpointError(path, f"checkpoint format version {meta.get('version')!r} (written "
                                    f"by wsebench {meta.get('wsebench', '?')}) is incompatible: this "
                                    f"wsebench {__version__} reads version {VERSION}")
    if "meta_sha256" not in meta:
        warnings.warn(f"checkpoint {str(path)!r} was written before its metadata had a checksum; "
                      f"save it again to protect it", UserWarning, stacklevel=4)
    elif meta["meta_sha256"] != meta_digest(meta):
        raise CheckpointError(path, "corrupted or edited: the metadata does not match its checksum")
    if meta.get("arrays_sha256") != _digest(arrays):
        raise CheckpointError(path, "corrupted: the arrays do not match their checksum")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(path, f"incomplete metadata, missing {', '.join(missing)}")
    return meta, arrays


def _check_plan(path: Path, plan, meta: dict, arrays: dict) -> None:
    """The arrays must fit the plan's captured graph: same parameter names, shapes and dtypes."""
    graph = plan.graph
    if graph_fingerprint(graph) != meta.get("graph_sha256"):
        raise CheckpointError(path, "corrupted: the plan's graph does not match its fingerprint")
    want = {fqn: graph.type_of[name] for name, fqn in graph.params}
    have = set(meta["params"])
    if set(want) != have:
        raise CheckpointError(path, f"parameters {sorted(have)} do not match the plan's "
                                    f"{sorted(want)}")
    for fqn, t in want.items():
        a = arrays.get(f"param/{fqn}")
        if a is None or tuple(a.shape) != tuple(t.shape) or str(a.dtype) != t.dtype:
            got = None if a is None else f"{a.dtype}{list(a.shape)}"
            raise CheckpointError(path, f"parameter {fqn!r} is {got}, the plan needs "
                                        f"{t.dtype}{list(t.shape)}")
        for slot, kind in meta["optimizer_state"].get(fqn, {}).items():
            s = arrays.get(f"opt/{fqn}/{slot}")
            if kind is not None and (s is None or s.shape != a.shape):
                raise CheckpointError(path, f"optimizer state {fqn}/{slot} is missing or misshapen")


def _check_model(path: Path, meta: dict, model, graph=None, x_type=None) -> None:
    """Refuse a checkpoint of another model: other state_dict keys, shapes or dtypes, another
    forward graph, or (`graph`, for a Session) another captured training graph."""
    if graph is not None and graph_fingerprint(graph) != meta["graph_sha256"]:
        raise CheckpointError(path, "saved from a different model: the captured training graph "
                                    "differs from this session's")
    saved, here = meta["model_state"], state_spec(model)
    problems = [f"missing {k!r}" for k in saved if k not in here]
    problems += [f"unexpected {k!r}" for k in here if k not in saved]
    problems += [f"{k!r} is {saved[k]['dtype']}{saved[k]['shape']} in the checkpoint, "
                 f"{here[k]['dtype']}{here[k]['shape']} in the model"
                 for k in saved if k in here and saved[k] != here[k]]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckpointError(path, f"saved from a different model: {'; '.join(problems[:5])}{more}")
    saved_forward = meta.get("forward_sha256")
    if graph is None and x_type is not None and saved_forward is not None:
        here_forward = forward_signature(model, x_type)
        if here_forward is None:
            warnings.warn(f"checkpoint {str(path)!r}: the model's forward cannot be traced, so "
                          f"only its parameter shapes were compared", UserWarning, stacklevel=4)
        elif here_forward != saved_forward:
            raise CheckpointError(path, "saved from a different model: same parameter shapes, "
                                        "but another forward graph (activation, dropout or "
                                        "layer order differ)")


def _report_meta(session, arrays: dict) -> dict | None:
    """The last step's report: JSON parts for the metadata, its arrays added to `arrays`."""
    if session._trainer.last_timing is None and session._saved_report is None:
        return None
    report = session.report()
    for name in _REPORT_ARRAYS:
        arrays[f"report/{name}"] = np.asarray(getattr(report, name))
    for i, load in enumerate(report.link_load):
        arrays[f"report/link_load/{i}"] = np.asarray(load)
    return canonical({"kernels": report.kernels, "summary": report.summary,
                      "kernel_names": list(report.kernel_names), "tensors": report.tensors,
                      "link_loads": len(report.link_load)})


def _restore_report(meta: dict, arrays: dict):
    from .report import Report
    saved = meta.get("report")
    if saved is None:
        return None
    loads = tuple(arrays[f"report/link_load/{i}"] for i in range(saved["link_loads"]))
    return Report(**{name: arrays[f"report/{name}"] for name in _REPORT_ARRAYS},
                  kernels=saved["kernels"], summary=saved["summary"],
                  kernel_names=saved["kernel_names"], tensors=saved["tensors"], link_load=loads)


class SavedModelState:
    """Stands in for the torch model of a session loaded without one: `Session.state_dict`
    needs only its keys, shapes and dtypes (and the values of keys the wafer does not hold)."""

    def __init__(self, spec: dict, extras: dict):
        self._spec, self._extras = spec, extras

    def state_dict(self) -> dict:
        return {k: torch.from_numpy(self._extras[k].copy()) if k in self._extras else
                torch.zeros(s["shape"], dtype=getattr(torch, s["dtype"]))
                for k, s in self._spec.items()}


def restore(path, model=None, graph=None, backend: str | None = None) -> dict:
    """What the checkpoint at `path` holds, restored: the plan, a Trainer with the parameters,
    optimizer state, step count, RNG and weight masks, the sparsity, the history (StepResults)
    and the model `Session.state_dict` reads (`model`, else the saved state). `model` and
    `graph` (optional) are checked against the checkpoint: a different model, or another
    captured graph, is refused with CheckpointError. `backend=` overrides the saved one."""
    from compiler import OptimizerSpec, Plan
    from simulator.backend import get_backend
    from simulator.training import StepResult, Trainer

    from . import sparsity as _sparsity
    from .sparsity import Sparsity, weight_sparsity
    path = Path(path)
    meta, arrays = _read(path)
    try:
        plan = Plan.from_json(meta["plan"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(path, f"its plan cannot be read by this wsebench: {err}") from None
    _check_plan(path, plan, meta, arrays)
    sparsity = Sparsity.parse(meta["sparsity"])
    if model is not None:
        trained = _sparsity.apply(model, sparsity) if sparsity.relu or sparsity.drop else model
        _check_model(path, meta, trained, graph=graph,
                     x_type=plan.graph.type_of[plan.graph.inputs[0]])
    else:
        model = SavedModelState(meta["model_state"], {k[len("extra/"):]: v for k, v in
                                                      arrays.items() if k.startswith("extra/")})
    try:
        chosen = get_backend(backend or meta["backend"])
    except RuntimeError as err:
        raise CheckpointError(path, f"{' '.join(str(err).split())} (or load with "
                                    f"backend='numpy')") from None
    params = {k: arrays[f"param/{k}"] for k in meta["params"]}
    buffers = {k: arrays[f"buffer/{k}"] for k in meta["buffers"]}
    saved_masks = meta.get("weight_sparsity")
    mask_state = None if saved_masks is None else (
        saved_masks, {k[len("wmask/"):]: v for k, v in arrays.items() if k.startswith("wmask/")})
    trainer = Trainer(plan, params, buffers, chosen, harvest=meta["harvest"],
                      weight_sparsity=weight_sparsity(sparsity.weights),
                      weight_sparsity_state=mask_state, clip_grad_norm=meta.get("clip_grad_norm"))
    # each param group's settings as they were when saved (a checkpoint before param groups
    # has one, the plan's)
    groups = meta.get("optimizer_groups")
    if groups:
        trainer.group_specs = [OptimizerSpec.from_dict(g) for g in groups]
        trainer.group_of = {fqn: int(i) for fqn, i in meta.get("group_of", {}).items()}
    xp = trainer.xp
    trainer.opt_state = {fqn: {slot: None if kind is None else xp.asarray(arrays[f"opt/{fqn}/{slot}"])
                               for slot, kind in slots.items()}
                         for fqn, slots in meta["optimizer_state"].items()}
    trainer.step_count = int(meta["step_count"])
    trainer.rng = _generator(path, meta["rng"])
    return {"plan": plan, "trainer": trainer, "model": model, "sparsity": sparsity,
            "history": [StepResult(**h) for h in meta["history"]],
            "report": _restore_report(meta, arrays), "config": meta.get("config"),
            "forward": meta.get("forward_sha256")}


def _generator(path: Path, state: dict) -> np.random.Generator:
    bit_generator = getattr(np.random, str(state.get("bit_generator")), None)
    if not isinstance(bit_generator, type) or not issubclass(bit_generator, np.random.BitGenerator):
        raise CheckpointError(path, f"unknown RNG {state.get('bit_generator')!r}")
    bg = bit_generator()
    bg.state = state
    return np.random.Generator(bg)
