"""wsebench's compiler: torch training step -> IR -> kernels -> mapping -> placement -> Plan."""
from .cost import Mapping
from .ir import Graph, IRError, Op, Ref, TensorType, format_graph, verify
from .errors import ConfigError, PlacementError, WaferFitError
from .optim_spec import OptimizerSpec
from .plan import Plan, compile_plan
from .target import PRESETS, Target, wafer

__all__ = ["Mapping", "Graph", "IRError", "Op", "Ref", "TensorType", "format_graph", "verify",
           "WaferFitError", "OptimizerSpec", "PlacementError", "Plan", "compile_plan", "PRESETS",
           "ConfigError", "Target", "wafer"]
