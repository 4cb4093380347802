"""A config run that survives being stopped: `run(config, checkpoint, resume=True)` (the CLI's
`wsebench run CONFIG --checkpoint FILE --resume`).

The session is saved to the checkpoint whenever the run stops: finished, interrupted (Ctrl-C,
SIGTERM) or refused a non-finite step (saved as it was before that step). With `resume`, a
checkpoint that exists is loaded, checked against the config (same captured training graph,
same config apart from `steps`), and training goes on from the batch after the last one it
took: the data and the dropout RNG are deterministic, so a resumed run equals an
uninterrupted one.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

from compiler import ConfigError

from . import config as _config
from .errors import NonFiniteError
from .store import canonical


def run(config: dict, checkpoint, resume: bool = False, progress: bool = True) -> dict:
    """`wsebench.config.run` with a checkpoint; returns the same dict (history: every step of
    the run, those before the resume included)."""
    start = time.perf_counter()
    parts = _config.build(config)
    config, path = parts["config"], Path(checkpoint)
    session = _config.compile_built(parts)
    if resume and path.exists():
        session = _resumed(path, session, config)
    done = len(session.history)
    batches = itertools.islice(parts["batches"], done, None)
    try:
        session.train(batches, steps=max(config["steps"] - done, 0), progress=progress)
    except NonFiniteError:
        session.save(path, config)
        raise
    session.save(path, config)
    history = session.history
    return {"session": session, "history": history, "report": session.report(), "config": config,
            "accuracy": _config.session_accuracy(session, history, parts["x"], parts["y"]),
            "final_loss": history[-1].loss, "wall_seconds": time.perf_counter() - start,
            "resumed_at": done}


def _resumed(path: Path, compiled, config: dict):
    from .session import load_session
    session = load_session(path, model=compiled)
    if session._config is not None and _run_of(session._config) != _run_of(canonical(config)):
        raise ConfigError(f"--resume: checkpoint {str(path)!r} was saved by a run of another "
                          f"config; resume with that config, or give a new --checkpoint path")
    session._trainer.on_nonfinite = compiled._trainer.on_nonfinite
    return session


def _run_of(config: dict) -> dict:
    """What makes two configs the same run: everything but how many steps it trains."""
    return {k: v for k, v in config.items() if k != "steps"}
