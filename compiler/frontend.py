"""torch -> IR: capture the joint forward+backward training graph as core ATen.

Two capture paths (DESIGN.md, "Facts established with torch 2.13"):
- "export": `torch.export.export` then `torch.export.experimental._export_forward_backward`,
  which yields one flat core-ATen graph with LOSS_OUTPUT and GRADIENT_TO_PARAMETER outputs;
- "aot": `aot_export_joint_with_descriptors` with the core-ATen decompositions.
"auto" (the default) takes the aot path, the faster, and falls back to export.
This is the only module of the compiler that imports torch.
"""
from __future__ import annotations

import contextlib
import operator
import os
import traceback
import warnings
from typing import Any, Callable

import torch
import torch.nn as nn

from .ir import Graph, Op, Ref, TensorType, verify
from .passes import merge_tied
from .optim_spec import OptimizerSpec
from .errors import ConfigError
from .op_names import CONSTANT_OP

WRAPPER_PREFIX = "model."
CAPTURE_METHODS = ("auto", "export", "aot")
_DROPPED_KWARGS = {"device", "layout", "pin_memory", "memory_format", "non_blocking"}


class CaptureError(RuntimeError):
    """torch could not capture the training step; the message says why and what to change."""


class _TrainingStep(nn.Module):
    """Wraps model + loss so that the captured module returns the loss, as both APIs require."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x, y):
        return (self.loss_fn(loss_input(self.model(x), self.loss_fn), y),)


def loss_input(output: Any, loss_fn: Callable) -> Any:
    """What the loss is given: the model's output as it is, except that a loss module (torch's
    `nn.CrossEntropyLoss`, `wb.models.TokenCrossEntropy`: modules take tensors) gets the logits
    of an output object or dict (HuggingFace's `.logits`) or the first item of a tuple
    (nanoGPT's `(logits, loss)`). A loss function gets the object and reads what it needs."""
    if isinstance(output, torch.Tensor) or not isinstance(loss_fn, nn.Module):
        return output
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ConfigError(f"the model returns a {type(output).__name__} with no logits tensor, and "
                      f"the loss {type(loss_fn).__name__} takes tensors; return the logits from "
                      "the model, or pass a loss function that reads them from the output")


def capture(model: nn.Module, loss_fn: Callable, example: tuple, method: str = "auto") -> Graph:
    """Capture `loss_fn(model(x), y)` and its gradients for every parameter as an IR Graph."""
    if method not in CAPTURE_METHODS:
        raise ConfigError(f"unknown capture method {method!r}; allowed: {', '.join(CAPTURE_METHODS)}")
    if not isinstance(example, (tuple, list)) or len(example) != 2:
        raise ConfigError("example must be a tuple (x, y) of one batch of inputs and targets")
    _check_trainable(model)
    _check_batch_norms(model)
    tied = tied_parameters(model)
    if tied and method == "export":
        raise CaptureError(f"parameters {sorted(tied)} are tied to {sorted(set(tied.values()))}; "
                           "torch.export's joint capture rejects tied parameters, so use "
                           "capture_method='aot' (or 'auto', which picks it)")
    step = _TrainingStep(model, loss_fn).train()
    try:
        with math_attention():
            graph = _capture_with(step, tuple(example), "aot" if tied else method)
    except Exception as err:
        cause = _data_dependent(err)
        if cause is None:
            raise
        raise CaptureError(_data_dependent_message(cause, model)) from err
    return merge_tied(graph, tied)


def _data_dependent(err: BaseException) -> BaseException | None:
    """The torch exception, in `err`'s chain, that says the forward branched on tensor values."""
    from torch._subclasses.fake_tensor import DataDependentOutputException
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode
    while err is not None:
        if isinstance(err, (DataDependentOutputException, GuardOnDataDependentSymNode)):
            return err
        err = err.__cause__ or err.__context__
    return None


def _data_dependent_message(err: BaseException, model: nn.Module) -> str:
    """Names the op (or the guarded expression), the module and the line, and the fix."""
    names = {id(m): name or type(model).__name__ for name, m in model.named_modules()}
    torch_dir = os.path.dirname(torch.__file__)
    where, module = "", "the loss function"
    for frame, line in traceback.walk_tb(err.__traceback__):   # outermost first: keep the last
        code = frame.f_code
        owner = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
        file = code.co_filename
        if isinstance(owner, nn.Module) and id(owner) in names and not file.startswith(torch_dir):
            module, where = names[id(owner)], f" ({file}:{line})"
    what = getattr(err, "func", None) or str(err).splitlines()[0]
    return (f"module {module!r}{where} makes a Python decision from tensor values ({what}: "
            "`if tensor`, `.item()`, `.tolist()`, a shape taken from data). wsebench captures one "
            "fixed training step, so the step cannot depend on the values of the batch. Compute it "
            "with tensor ops instead (`torch.where`, a mask), or decide it once outside the model")


def tied_parameters(model: nn.Module) -> dict[str, str]:
    """Alias fqn -> the fqn `named_parameters()` gives the same Parameter (nanoGPT's
    `lm_head.weight` -> `transformer.wte.weight`): the name the optimizer and the session hold."""
    first: dict[int, str] = {}
    aliases = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        canonical = first.setdefault(id(param), name)
        if canonical != name:
            aliases[name] = canonical
    return aliases


@contextlib.contextmanager
def math_attention():
    """Trace `F.scaled_dot_product_attention` through its math decomposition (bmm, softmax,
    dropout, the causal or given mask as `where`/`add`), whatever backend torch would pick.

    At dropout 0 on CPU, torch picks the flash kernel, whose forward core ATen decomposes but
    whose backward (`_scaled_dot_product_flash_attention_for_cpu_backward`) stays one opaque op
    with no wafer kernel. The math path's ops are ones the compiler already groups into an
    attention kernel and the simulator already computes; it gives the same values as flash up
    to float32 rounding (the summation order of the softmax)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH):
        yield


def _capture_with(step: nn.Module, example: tuple, method: str) -> Graph:
    """"auto" tries the aot path first (2x faster than export on BERT-base: 3.8 against 7.7 CPU
    seconds) and falls back to export where aot rejects the model."""
    first, second = {"aot": (_capture_aot, None), "export": (_capture_export, None),
                     "auto": (_capture_aot, _capture_export)}[method]
    try:
        return first(step, example)
    except CaptureError:
        raise
    except Exception as err:
        if second is None or _data_dependent(err) is not None:       # the fallback fails too
            if method == "export":
                raise CaptureError(f"torch.export could not capture the training step: {err}") from err
            raise
        warnings.warn(f"aot_export_joint_with_descriptors failed ({type(err).__name__}: {err}); "
                      "falling back to torch.export", stacklevel=3)
        return second(step, example)


def _check_trainable(model: nn.Module) -> None:
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        raise ConfigError(f"parameters {frozen[:3]} have requires_grad=False; the wafer trains "
                          "every parameter, so remove them from the model or make them trainable")
    if not list(model.parameters()):
        raise ConfigError("the model has no parameters to train")


def _check_batch_norms(model: nn.Module) -> None:
    """A BatchNorm with momentum=None (a cumulative average) divides by its batch count read
    back as a Python float (`1 / float(num_batches_tracked)`): a step that depends on a tensor's
    value, which one captured step cannot hold."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training and \
                module.track_running_stats and module.momentum is None:
            raise CaptureError(f"module {name!r} ({type(module).__name__}) has momentum=None, a "
                               "cumulative average whose factor 1/num_batches_tracked is read from "
                               "a tensor on every step; wsebench captures one fixed step, so set "
                               "momentum to a number (torch's default is 0.1)")


def _capture_export(step: nn.Module, example: tuple) -> Graph:
    from torch.export.experimental import _export_forward_backward
    from torch.export.graph_signature import InputKind, OutputKind

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ep = torch.export.export(step, example)
        joint = _export_forward_backward(ep, joint_loss_index=0)
    sig = joint.graph_signature
    kinds: dict[str, tuple[str, str | None]] = {}
    for spec in sig.input_specs:
        kind = {InputKind.PARAMETER: "param", InputKind.BUFFER: "buffer",
                InputKind.USER_INPUT: "input", InputKind.CONSTANT_TENSOR: "constant"}.get(spec.kind)
        if kind is None:
            raise CaptureError(f"unsupported graph input kind {spec.kind} for {spec.target}")
        kinds[spec.arg.name] = (kind, spec.target)
    loss, grads, updates = None, [], []
    for spec in sig.output_specs:
        if spec.kind == OutputKind.LOSS_OUTPUT:
            loss = spec.arg.name
        elif spec.kind == OutputKind.GRADIENT_TO_PARAMETER:
            grads.append((spec.target, spec.arg.name))
        elif spec.kind == OutputKind.BUFFER_MUTATION:
            updates.append((spec.target, spec.arg.name))
    return _to_ir(joint.graph_module.graph, kinds, loss, grads, method="export",
                  constants=joint.constants, updates=updates)


def _capture_aot(step: nn.Module, example: tuple) -> Graph:
    from torch._decomp import core_aten_decompositions
    from torch._export.utils import _compiling_state_context
    from torch._functorch.aot_autograd import aot_export_joint_with_descriptors

    with contextlib.ExitStack() as stack:
        # what torch.export sets while it traces: model code that asks `torch.compiler.
        # is_compiling()` (HuggingFace's `is_tracing`) skips its data-dependent checks, as it
        # does under export
        stack.enter_context(_compiling_state_context())
        joint = aot_export_joint_with_descriptors(
            stack, step, example, decompositions=core_aten_decompositions())
        graph = joint.graph_module.graph
        kinds: dict[str, tuple[str, str | None]] = {}
        for node in graph.find_nodes(op="placeholder"):
            desc = type(node.meta["desc"]).__name__
            target = getattr(node.meta["desc"], "target", None)
            kinds[node.name] = {"ParamAOTInput": ("param", target), "BufferAOTInput": ("buffer", target),
                                "PlainAOTInput": ("input", None),
                                "TangentAOTInput": ("tangent", None)}[desc]
        output = graph.find_nodes(op="output")[0]
        loss, grads, updates = None, [], []
        for node, desc in zip(output.args[0], output.meta["desc"]):
            name = type(desc).__name__
            if node is None and name == "GradAOTOutput":
                raise CaptureError(f"parameter {_strip(desc.grad_of.target)!r} gets no gradient "
                                   "from the loss; every parameter must take part in computing it")
            if node is None:
                continue
            if name == "PlainAOTOutput" and loss is None:
                loss = node.name
            elif name == "GradAOTOutput":
                grads.append((desc.grad_of.target, node.name))
            elif name == "InputMutationAOTOutput" and \
                    type(desc.mutated_input).__name__ == "BufferAOTInput":
                updates.append((desc.mutated_input.target, node.name))
            elif node is not None and name not in ("PlainAOTOutput",):
                raise CaptureError(f"unsupported graph output {desc} (an input mutated in the "
                                   "step that is not a buffer)")
        return _to_ir(graph, kinds, loss, grads, method="aot", updates=updates)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _tensor_type(val: Any) -> TensorType | None:
    if isinstance(val, torch.Tensor):
        return TensorType(tuple(int(s) for s in val.shape), _dtype_name(val.dtype))
    return None


def _convert_arg(arg: Any, rename: dict[str, str]) -> Any:
    if isinstance(arg, torch.fx.Node):
        return Ref(rename.get(arg.name, arg.name))
    if isinstance(arg, (list, tuple)):
        return tuple(_convert_arg(a, rename) for a in arg)
    if isinstance(arg, torch.dtype):
        return _dtype_name(arg)
    if arg is None or isinstance(arg, (bool, int, float, str)):
        return arg
    raise CaptureError(f"cannot represent argument {arg!r} of type {type(arg).__name__}")


def _strip(fqn: str | None) -> str:
    return fqn.removeprefix(WRAPPER_PREFIX) if fqn else fqn


def _to_ir(fx_graph, kinds: dict, loss: str | None, grads: list, method: str,
           constants: dict | None = None, updates: list = ()) -> Graph:
    """Walk the fx graph once; getitem nodes become names for a tuple op's outputs, and tensor
    constants (lifted to inputs by export, module attributes for aot) constant ops. `updates`:
    (buffer fqn, value) of every buffer the step writes (BatchNorm's running statistics), kept
    as the graph's `buffer_updates` for the trainer to write back after the step."""
    if loss is None:
        raise CaptureError("the captured graph has no loss output; loss_fn must return a scalar")
    rename: dict[str, str] = {}
    types: dict[str, TensorType] = {}
    inputs, params, buffers, ops = [], [], [], []
    for node in fx_graph.nodes:
        if node.op == "placeholder":
            kind, target = kinds[node.name]
            types[node.name] = _tensor_type(node.meta["val"])
            if kind == "constant":
                ops.append(_constant_op(node.name, constants[target], types))
                continue
            if kind == "tangent":  # d(loss)/d(loss) = 1, seeded by a constant op
                ops.append(Op("aten.ones_like.default", (Ref(loss),), (), (node.name,)))
                continue
            {"param": params, "buffer": buffers, "input": inputs}[kind].append(
                (node.name, _strip(target)) if kind != "input" else node.name)
        elif node.op == "call_function" and node.target is operator.getitem:
            source, index = node.args
            rename[node.name] = f"{rename.get(source.name, source.name)}#{index}"
        elif node.op == "call_function" and _is_assertion(node):
            continue
        elif node.op == "call_function":
            ops.append(_convert_node(node, rename, types))
        elif node.op == "get_attr":
            ops.append(_constant_op(node.name, getattr(fx_graph.owning_module, node.target), types))
        elif node.op != "output":
            raise CaptureError(f"unsupported fx node {node.op} {node.target}")
    if method == "aot":  # the tangent placeholder refers to the loss: move it after its producer
        ops = _move_tangent_seeds(ops)
    types = {rename.get(k, k): v for k, v in types.items() if v is not None}
    meta = (("capture", method),)
    if updates:
        meta += (("buffer_updates", tuple((_strip(f), rename.get(v, v)) for f, v in updates)),)
    graph = Graph(inputs=tuple(inputs), params=tuple(params), buffers=tuple(buffers), masks=(),
                  ops=tuple(ops), types=tuple(types.items()), loss=rename.get(loss, loss),
                  grads=tuple((_strip(f), rename.get(v, v)) for f, v in grads), meta=meta)
    missing = set(graph.param_fqn.values()) - {f for f, _ in graph.grads}
    if missing:
        raise CaptureError(f"parameters {sorted(missing)} get no gradient from the loss; every "
                           "parameter must take part in computing it")
    return verify(graph)


MAX_CONSTANT_NUMEL = 1 << 16


def _constant_op(name: str, tensor, types: dict) -> Op:
    """A tensor the forward makes from Python data (`torch.tensor([])` for HuggingFace's empty
    KV cache, a mask value), which torch leaves as a module attribute: the IR carries its
    values in an op of its own, so the plan stays self-contained."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    with unset_fake_temporarily():   # the aot capture reads the graph under its fake mode
        value = tensor.detach().cpu()
        values = tuple(value.reshape(-1).tolist())
    if value.numel() > MAX_CONSTANT_NUMEL:
        raise CaptureError(f"the model makes a {tuple(value.shape)} tensor from Python data in "
                           f"its forward ({name}); wsebench carries at most "
                           f"{MAX_CONSTANT_NUMEL} such values: register it as a buffer instead "
                           "(`self.register_buffer(name, tensor)` in `__init__`)")
    types[name] = _tensor_type(value)
    return Op(CONSTANT_OP, (values, tuple(value.shape)), (("dtype", _dtype_name(value.dtype)),),
              (name,))


def _is_assertion(node) -> bool:
    """Shape/dtype checks torch.export leaves in the graph (`aten._assert_tensor_metadata` after a
    dtype cast): they compute nothing and nothing reads them, and the capture already checked
    them on the example."""
    name = str(node.target)
    return name.startswith("aten._assert") and not node.users


def _convert_node(node, rename: dict, types: dict) -> Op:
    val = node.meta.get("val")
    if isinstance(val, (tuple, list)):
        outputs = tuple(f"{node.name}#{i}" for i in range(len(val)))
        for out, v in zip(outputs, val):
            types[out] = _tensor_type(v)
    else:
        outputs = (node.name,)
        types[node.name] = _tensor_type(val)
    kwargs = tuple((k, _convert_arg(v, rename)) for k, v in node.kwargs.items()
                   if k not in _DROPPED_KWARGS)
    return Op(str(node.target), _convert_arg(tuple(node.args), rename), kwargs, outputs)


def _move_tangent_seeds(ops: list[Op]) -> list[Op]:
    seeds = [op for op in ops if op.op == "aten.ones_like.default" and op.args
             and isinstance(op.args[0], Ref)]
    rest = [op for op in ops if op not in seeds]
    for seed in seeds:
        at = next(i for i, op in enumerate(rest) if seed.args[0].name in op.outputs) + 1
        rest.insert(at, seed)
    return rest


def module_of_ops(model: nn.Module, loss_fn: Callable, example: tuple) -> dict[str, str]:
    """Map forward op names to the module that called them, for error messages only.

    The joint graph drops `nn_module_stack`, but the decomposed forward program keeps it and
    uses the same node names.
    """
    with warnings.catch_warnings(), math_attention():
        warnings.simplefilter("ignore")
        ep = torch.export.export(_TrainingStep(model, loss_fn).train(), tuple(example))
        ep = ep.run_decompositions()
    owners = {}
    for node in ep.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        if not stack or node.target is operator.getitem:
            continue
        path, _ = list(stack.values())[-1]
        owner = path.removeprefix("L['self'].").removeprefix(WRAPPER_PREFIX)
        val = node.meta.get("val")
        names = [f"{node.name}#{i}" for i in range(len(val))] if isinstance(val, (tuple, list)) \
            else [node.name]
        owners.update(dict.fromkeys(names, owner))
    return owners


def optimizer_spec(optimizer: Any) -> OptimizerSpec:
    """The spec of a torch.optim SGD/Adam/AdamW instance's first param group (the one the cost
    model prices), after checking every group (`optimizer_specs`)."""
    return optimizer_specs(optimizer)[0]


def optimizer_specs(optimizer: Any) -> list[OptimizerSpec]:
    """One OptimizerSpec per param group of a torch.optim SGD/Adam/AdamW instance, read from the
    groups as they are now (a scheduler's current lr included), refusing what we lack."""
    from .optim_spec import from_hyperparameters
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must be a torch.optim.SGD, Adam or AdamW instance, got "
                          f"{type(optimizer).__name__}")
    kind = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}.get(
        type(optimizer))
    if kind is None:
        raise ConfigError(f"unsupported optimizer {type(optimizer).__name__}; allowed: SGD, Adam, AdamW")
    specs = []
    for i, group in enumerate(optimizer.param_groups):
        group = dict(group)
        if isinstance(group.get("lr"), torch.Tensor) and group["lr"].numel() == 1:
            group["lr"] = float(group["lr"])
        try:
            specs.append(from_hyperparameters(kind, group))
        except ConfigError as err:
            where = f"param group {i}: " if len(optimizer.param_groups) > 1 else ""
            raise ConfigError(f"{where}{err}") from None
    return specs
