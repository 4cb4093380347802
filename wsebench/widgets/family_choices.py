"""The model families the workbench offers: a label for the dropdown and where sparsity starts.

What a family's model compiles to (its kernels, their memory) is not described here: the
pre-compile checks capture the model on fake tensors and ask the compiler (`wsebench.precheck`).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import families as _families


@dataclass(frozen=True)
class Family:
    """A model family the workbench offers; `sparse_at` is the module glob that ReLU insertion
    and dropping small values start from (its dense non-linearities)."""
    name: str
    label: str
    sparse_at: str


FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", "MLP", "act*"),
    "transformer": Family("transformer", "Transformer", "layers.*.ffn.act"),
    _families.UT: Family(_families.UT, "Universal Transformer (ACT)", "block.ffn.act"),
}
