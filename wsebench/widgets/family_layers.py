"""The model families the workbench offers, with the kernel tables its pre-compile checks use.

A family's `layers(kwargs)` lists the kernels that hold parameters, named as the compiler names
them (after the owning module, DESIGN.md "Public API"), from the builder's keyword arguments:
its parameter count (for the host and SRAM lower bounds) and, for a matmul kernel, its in x out
extents (a pin cannot use more rows or columns than that).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from .. import families as _families


class Layer(NamedTuple):
    """A parameter-holding kernel for the pre-compile checks: `params` it holds; `matmul`
    kernels spread at most over fan_in x fan_out cores (a pin's rows <= fan_in, cols <=
    fan_out), the others' extents are the compiler's to choose."""
    name: str
    fan_in: int
    fan_out: int
    params: int
    matmul: bool = True


def _linear(name: str, fan_in: int, fan_out: int, bias: bool = True) -> Layer:
    return Layer(name, fan_in, fan_out, fan_in * fan_out + (fan_out if bias else 0))


@dataclass(frozen=True)
class Family:
    """A model family the workbench offers: `layers(kwargs)` lists its parameter-holding kernels
    from the builder's keyword arguments (None: unknown); `sparse_at` is the module glob that
    ReLU insertion and dropping small values start from (its dense non-linearities)."""
    name: str
    label: str
    layers: Callable[[dict], "list[Layer] | None"]
    sparse_at: str


def _mlp_layers(kwargs: dict) -> list[Layer]:
    m = {**_families.defaults("mlp"), **kwargs}
    widths = [m["in_features"]] + [m["hidden"]] * (m["depth"] - 1) + [m["out_features"]]
    return [_linear(f"fc{i + 1}", widths[i], widths[i + 1]) for i in range(m["depth"])]


def _norm(name: str, d: int) -> Layer:
    return Layer(name, 1, d, 2 * d, matmul=False)


def _block(prefix: str, m: dict) -> list[Layer]:
    """One encoder block (wsebench.models.EncoderBlock): its kernels are named after its modules."""
    d, ffn = m["d_model"], m["ffn"]
    if m["attention"] == "torch":          # nn.MultiheadAttention: q, k, v in one in_proj
        attn = [Layer(f"{prefix}.attn", d, 3 * d, 3 * d * d + 3 * d, matmul=False),
                _linear(f"{prefix}.attn.out_proj", d, d)]
    else:
        attn = [_linear(f"{prefix}.attn.{p}", d, d) for p in "qkvo"]
    return [_norm(f"{prefix}.ln1", d), *attn, _norm(f"{prefix}.ln2", d),
            _linear(f"{prefix}.ffn.fc1", d, ffn), _linear(f"{prefix}.ffn.fc2", ffn, d)]


def _embedding(name: str, rows: int, d: int) -> Layer:
    return Layer(name, rows, d, rows * d, matmul=False)


def _transformer_layers(kwargs: dict) -> list[Layer]:
    m = {**_families.defaults("transformer"), **kwargs}
    d = m["d_model"]
    out = [_embedding("embed", m["vocab"], d), _embedding("pos", m["max_len"], d)]
    for i in range(m["layers"]):
        out += _block(f"layers.{i}", m)
    return out + [_norm("norm", d), _linear("head", d, m["classes"])]


def _ut_layers(kwargs: dict) -> list[Layer]:
    m = {**_families.defaults(_families.UT), **kwargs}
    d = m["d_model"]
    halt = [_linear("halt", d, 1)] if m["act"] else []
    return [_embedding("embed", m["vocab"], d), *_block("block", m), *halt, _norm("norm", d),
            _linear("head", d, m["classes"])]


FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", "MLP", _mlp_layers, "act*"),
    "transformer": Family("transformer", "Transformer", _transformer_layers, "layers.*.ffn.act"),
    _families.UT: Family(_families.UT, "Universal Transformer (ACT)", _ut_layers, "block.ffn.act"),
}
