"""The one table of wsebench's own op names, shared by the compiler, the simulator and wsebench.

wsebench registers three torch custom ops in its namespace (`wsebench/markers.py`,
`wsebench/drop_op.py`); a captured graph spells each as `<namespace>.<name>.default`. The
compiler reads them (which positions run, which values a sender filters), the simulator gives
them numerics, and wsebench registers them with torch under the same names.
"""
from __future__ import annotations

NAMESPACE = "wsebench"


def torch_name(name: str) -> str:
    """`running` -> `wsebench::running`, as `torch.library.custom_op` takes it."""
    return f"{NAMESPACE}::{name}"


def ir_name(name: str) -> str:
    """`running` -> `wsebench.running.default`, as the IR spells the captured op."""
    return f"{NAMESPACE}.{name}.default"


# Identity marker: `running(h, mask)` marks the positions (mask True) that compute from here on.
RUNNING = "running"
# Its backward twin, carrying the same mask into the backward half of the joint graph.
RUNNING_GRAD = "running_grad"
# Drop small values per sample: runs on its producer's cores, filtering what it sends.
DROP_SMALL = "drop_small"

# A tensor the forward builds from Python data, its values carried in the op (frontend).
CONSTANT = "constant"

RUNNING_OP = ir_name(RUNNING)
RUNNING_GRAD_OP = ir_name(RUNNING_GRAD)
MARKER_OPS = frozenset({RUNNING_OP, RUNNING_GRAD_OP})
DROP_SMALL_OP = ir_name(DROP_SMALL)
SENDER_OPS = frozenset({DROP_SMALL_OP})
CONSTANT_OP = ir_name(CONSTANT)
