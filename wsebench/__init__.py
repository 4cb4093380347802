"""wsebench: train a PyTorch model on a simulated wafer-scale engine and see what the wafer did.

    import wsebench as wb
    s = wb.compile(model, loss_fn, example=(x, y), optimizer=opt, wafer="classroom")
    s.train(batches); s.report()
    s.save("run.ckpt"); s = wb.load_session("run.ckpt")         # checkpoints, resume
    table = wb.sweep(wb.default_config(), {"model.hidden": [32, 64]}, store="runs")   # sweeps
"""
from compiler import ConfigError, Mapping, PlacementError, Plan, Target, WaferFitError
from compiler import wafer
from simulator.training import StepResult

from . import config, data, dynamic, fabric, models, tasks, universal
from .checkpoint import CheckpointError
from .config import default_config, run
from .report import Report
from . import sparsity
from .session import History, Session, UnsupportedOpError, compile, load_session
from .sparsity import Sparsity
from .store import Results, load_results
from .universal import universal_transformer, ut_loss
from .sweeps import SweepError, sweep

__version__ = "0.1.0"

__all__ = ["wafer", "compile", "Mapping", "Sparsity", "Session", "StepResult", "History", "Report",
           "Plan", "Target", "ConfigError", "WaferFitError", "PlacementError", "UnsupportedOpError", "models", "data",
           "config", "default_config", "run", "sweep", "sparsity", "Results", "SweepError", "load_results",
           "load_session", "CheckpointError", "tasks", "universal", "dynamic", "universal_transformer", "ut_loss"]

__all__ += ["Workbench", "widgets"]


def __getattr__(name):
    """`wb.Workbench` and `wb.widgets` (the Jupyter workbench) import ipywidgets on first use."""
    if name in ("Workbench", "widgets"):
        import importlib
        widgets = importlib.import_module(f"{__name__}.widgets")
        return widgets.Workbench if name == "Workbench" else widgets
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
