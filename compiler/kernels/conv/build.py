"""Building a convolution kernel from the graph, and refusing the convolutions it cannot run.

A Conv layer's op group holds its forward `aten.convolution` (x, weight, bias, stride, padding,
dilation, transposed, output padding, groups) and its `aten.convolution_backward`, whose
output mask says whether dX is computed (not for a first layer, whose input needs no gradient).
The kernel streams x (forward), dY (backward) and, when it computes one, dX.
"""
from __future__ import annotations

import functools
import math

from ...errors import ConfigError
from ...ir import Graph, Op
from ..base import Access, Kernel, LoopNest
from .contest import COLUMNS_PER_BLOCK, Conv

CONV_OP = "aten.convolution.default"
CONV_BACKWARD_OP = "aten.convolution_backward.default"


def conv_nest(samples: int, conv: Conv, out: tuple[int, int], channels: int) -> LoopNest:
    """`for b, k, c, oh, ow, r, s: y[b,k,oh,ow] += x[b,c,oh T + r,ow U + s] w[k,c,r,s]`, with the
    contest's rectangle (`contest.contest_shape`) as the dims a mapping unrolls: `hwc`, the
    height h' w' (c' + 1), over rows, `k3`, the width 3 k', over cols. `x_channels` is x's
    channel count (C / groups of them feed each output channel: `c`)."""
    return LoopNest(dims=(("b", samples), ("k", conv.K), ("c", conv.C), ("oh", out[0]), ("ow", out[1]),
                          ("r", conv.R), ("s", conv.S), ("h", conv.H), ("w", conv.W),
                          ("t", conv.T), ("u", conv.U), ("x_channels", channels),
                          ("hwc", conv.H * conv.W * (conv.C + 1)), ("k3", COLUMNS_PER_BLOCK * conv.K)),
                    accesses=(Access("x", ("b", "c", "h", "w"), "stream_in"),
                              Access("w", ("k", "c", "r", "s"), "resident"),
                              Access("y", ("b", "k", "oh", "ow"), "stream_out")),
                    row_dim="hwc", col_dim="k3", reduce_dims=("c", "r", "s"))


def conv_of(kernel: Kernel) -> Conv:
    return conv_of_nest(kernel.nest)


@functools.lru_cache(maxsize=1024)
def conv_of_nest(nest: LoopNest) -> Conv:
    extents = dict(nest.dims)
    return Conv(*(extents[d] for d in ("h", "w", "r", "s", "c", "k", "t", "u")))


def conv_kernel(name: str = "conv", samples: int = 2, channels: int = 4, out_channels: int = 8,
                size: int = 8, kernel_size: int = 3, stride: int = 1, dx: bool = True,
                bias: bool = True) -> Kernel:
    """A Conv2d layer's kernel ("same" padding), built by hand (no graph): streams named after
    the kernel, no dX pass when `dx` is False (a first layer)."""
    conv = Conv(size, size, kernel_size, kernel_size, channels, out_channels, stride, stride)
    out = (math.ceil(size / stride),) * 2
    streams = (("x", f"{name}_x"), ("dy", f"{name}_dy")) + ((("dx", f"{name}_dx"),) if dx else ())
    params = (f"{name}.weight",) + ((f"{name}.bias",) if bias else ())
    numel = out_channels * channels * kernel_size ** 2 + (out_channels if bias else 0)
    return Kernel(name, "conv", (f"{name}_op",), params, conv_nest(samples, conv, out, channels),
                  streams, samples, numel)


def build(graph: Graph, name: str, ops: list[Op], context) -> Kernel | None:
    """The kernel of an op group whose convolution reads a parameter as its weight, else None."""
    roots = context.roots
    forwards = [o for o in ops if o.op == CONV_OP and getattr(o.args[1], "name", None) in roots]
    if not forwards:
        return None
    forward = forwards[0]
    refuse_unsupported(graph, forward, name)
    x, weight = (a.name for a in forward.args[:2])
    xs, ws = graph.type_of[x].shape, graph.type_of[weight].shape
    ys = graph.type_of[forward.name].shape
    one_d = len(xs) == 3
    stride = tuple(forward.args[3])
    conv = Conv(1 if one_d else xs[2], xs[-1], 1 if one_d else ws[2], ws[-1], ws[1], ws[0],
                1 if one_d else stride[0], stride[-1])
    out = (1 if one_d else ys[2], ys[-1])
    backward = next((o for o in ops if o.op == CONV_BACKWARD_OP
                     and getattr(o.args[1], "name", None) == x), None)
    streams = (("x", x),)
    if backward is not None:
        streams += (("dy", backward.args[0].name),)
        if backward.args[-1][0]:
            streams += (("dx", f"{backward.name}#0"),)
    params = context.params_of(name, ops)
    return Kernel(name, "conv", tuple(o.name for o in ops), params,
                  conv_nest(context.samples, conv, out, xs[1]), streams, context.samples,
                  context.param_numel(params))


def refuse_unsupported(graph: Graph, op: Op, module: str) -> None:
    """Transposed and 3-D convolutions have no kernel: a clear error at compile."""
    transposed, rank = op.args[6], len(graph.type_of[op.args[0].name].shape)
    if transposed or rank not in (3, 4):
        what = "a transposed convolution" if transposed else f"a {rank - 2}-D convolution"
        raise ConfigError(
            f"unsupported op: ATen op 'aten.convolution' ({what}) in module {module!r} has no "
            "wafer kernel; wsebench runs 1-D and 2-D convolutions (nn.Conv1d, nn.Conv2d). Replace "
            "that layer (e.g. nn.Upsample + nn.Conv2d for a transposed one)")
