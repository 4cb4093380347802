"""wsebench: train a PyTorch model on a simulated wafer-scale engine and see what the wafer did.

    import wsebench as wb
    s = wb.compile(model, loss_fn, example=(x, y), optimizer=opt, wafer="classroom")
    s.train(batches); s.report()
"""
from compiler import ConfigError, Mapping, Plan, Target, WaferFitError
from compiler import wafer
from simulator.training import StepResult

from . import config, data, models
from .report import Report
from .session import History, Session, Sparsity, UnsupportedOpError, compile

__version__ = "0.1.0"

__all__ = ["wafer", "compile", "Mapping", "Sparsity", "Session", "StepResult", "History", "Report",
           "Plan", "Target", "ConfigError", "WaferFitError", "UnsupportedOpError", "models", "data",
           "config"]
