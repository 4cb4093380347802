"""wsebench's compiler: torch training step -> IR -> kernels -> mapping -> placement -> Plan.

The public surface (what the simulator and wsebench import): the IR, `Plan`/`compile_plan`,
`Target`, `Mapping`, the errors, the kernel-kind registry (`compiler.kernels`), the one
evaluation (`compiler.cost`) and the one schedule (`compiler.schedule`), and `markers`.
"""
from .errors import ConfigError, PlacementError, WaferFitError
from .ir import Graph, IRError, Op, Ref, TensorType, format_graph, verify
from .mapping import Mapping, in_flight
from .optim_spec import OptimizerSpec
from .plan import Plan, compile_plan
from .steps import Markers, axis_kind, markers
from .target import PRESETS, Target, wafer

__all__ = ["Mapping", "Graph", "IRError", "Op", "Ref", "TensorType", "format_graph", "verify",
           "WaferFitError", "OptimizerSpec", "PlacementError", "Plan", "compile_plan", "PRESETS",
           "ConfigError", "Target", "wafer", "in_flight", "Markers", "axis_kind", "markers"]
