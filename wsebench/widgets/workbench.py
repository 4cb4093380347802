"""`Workbench`: the ipywidgets wiring over `WorkbenchState` (the config) and `Runner` (training).

    w = wb.Workbench()                              # or Workbench.from_config(cfg, hide=[...])
    w                                               # shows it in Jupyter
    w.compile(); w.run()                            # what the buttons do, from code (blocking)
    w.config                                        # the whole state: `wsebench run` replays it
    with w.hold(): w.set(...); w.set(...)           # several changes, checked once at the end
    wb.Workbench(preset="lesson-harvest")           # a lesson: its config, controls hidden

Every control writes its value into the state and re-runs the checks; a combination the wafer
cannot take is refused (buttons disabled, the reason shown) before it reaches the compiler.
Training runs in a background thread, so Pause and Step respond while it trains; the views
(loss curve, samples/s, per-core heatmap, placement map, compile report) update in place.
"""
from __future__ import annotations

import contextlib
import threading
from html import escape

import ipywidgets as W

from .. import ConfigError

from . import render, views
from .live import LiveViews
from .panels import make_buttons, make_control, make_panels
from .runner import Runner
from .state import (CONTROLS, PANELS, RUN_ONLY_KEYS, WorkbenchState, check_hide, lesson,
                    lesson_config, validate)


class Workbench(LiveViews):
    def __init__(self, config: dict | None = None, preset: str | None = None, hide=None):
        hidden = list(check_hide(hide))
        self.lesson = None
        if preset is not None:
            self.lesson = lesson(preset)
            config = {**lesson_config(preset), **(config or {})}
            hidden = list(self.lesson.hide) + hidden
        self.preset = preset
        self.state = WorkbenchState(config)
        self.hidden = tuple(dict.fromkeys(hidden))
        self.runner = Runner(on_step=self._on_step, on_status=self._on_status)
        self.message = ""              # the last problem/notice shown, as text
        self._syncing = False
        self._held = 0                 # > 0 inside `hold()`: the checks wait for its end
        self._draw_lock = threading.RLock()
        self._last_draw = 0.0
        self._draw_cost = 0.0
        self._loss_plot = render.LossPlot()
        self._job: threading.Thread | None = None
        self._autoplay = False
        self._outdated = False         # the views were cleared: they picture an old model
        self._build()
        self._refresh()
        self._draw_idle()

    @classmethod
    def from_config(cls, config: dict, hide=None) -> "Workbench":
        return cls(config=config, hide=hide)

    # the state --------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The whole experiment as one JSON-serializable dict (wsebench.config's format)."""
        return self.state.config

    def set(self, key: str, value) -> None:
        """Set a control by its key ("model.hidden", "sparsity.harvest", ...), as a user would."""
        if key not in self.controls:
            raise KeyError(f"no control {key!r}; controls: {', '.join(self.controls)}")
        self.controls[key].value = value

    def problems(self) -> list[str]:
        return self.state.problems()

    @contextlib.contextmanager
    def hold(self):
        """Change several controls, check once: inside the block every control still writes
        the config and the others follow it (options, visibility), but the checks, which
        capture the model to see that it fits the wafer, run once, when the block ends.

            with w.hold():
                w.set("model.d_model", 64)
                w.set("model.ffn", 256)
        """
        self._held += 1
        try:
            yield self
        finally:
            self._held -= 1
            if not self._held:
                self._refresh()

    # building the widgets -------------------------------------------------------------------------
    def _build(self) -> None:
        config = self.state.config
        self.controls = {c.key: make_control(c, self.state.get(c.key), config) for c in CONTROLS}
        for key, w in self.controls.items():
            w.observe(lambda change, key=key: self._on_control(key, change["new"]), names="value")
        self.panels = make_panels(self.controls)
        self.buttons = make_buttons()
        self.buttons["compile"].on_click(lambda _: self._click_compile())
        self.buttons["train"].on_click(lambda _: self._click_train())
        self.buttons["pause"].on_click(lambda _: self.pause())
        self.buttons["step"].on_click(lambda _: self._click_step())
        self.notice = W.HTML()
        self.notice.add_class("wsebench-message")
        pictures = self._build_views()
        title = "wsebench workbench"
        intro = ""
        if self.lesson is not None:
            title = f"wsebench lesson: {self.lesson.title}"
            intro = f"<div style='margin:2px 0 6px 0'>{self.lesson.note}</div>"
        bar = W.HBox([*self.buttons.values(), self.progress],
                      layout=W.Layout(align_items="center", flex_flow="row wrap"))
        self.widget = W.VBox([
            W.HTML(f"<h3 style='margin:4px 0'>{escape(title)}</h3>{intro}"),
            W.HBox(list(self.panels.values()), layout=W.Layout(flex_flow="row wrap")),
            bar, self.status, self.notice, pictures, self.report_html])
        self.widget.add_class("wsebench-workbench")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # controls -> state -> checks ------------------------------------------------------------------
    def _on_control(self, key: str, value) -> None:
        if self._syncing:
            return
        try:
            self.state.set(key, value)
        except ConfigError as err:
            self._show([str(err)], [])
            return
        self._refresh()

    def _refresh(self) -> None:
        """Widgets from the state (one change can move others), visibility, checks, buttons."""
        self._syncing = True
        config = self.state.config
        try:
            for c in CONTROLS:
                w, value = self.controls[c.key], self.state.get(c.key)
                if c.kind == "choice":
                    # the options can depend on the config (e.g. the family's activations);
                    # a config's value the UI does not offer is shown too
                    options = c.choices(config)
                    options += (value,) if value is not None and value not in options else ()
                    if tuple(w.options) != options:
                        w.options = options
                if value is not None and w.value != value:
                    w.value = value
                shown = c.key not in self.hidden and self.state.visible(c.key)
                w.layout.display = None if shown else "none"
        finally:
            self._syncing = False
        for panel, box in self.panels.items():
            keys = [c.key for c in CONTROLS if c.panel == panel]
            empty = all(self.controls[k].layout.display == "none" for k in keys)
            box.layout.display = "none" if panel in self.hidden or empty else None
        if self._held:
            return
        notes = self.state.warnings()
        if self.runner.compiled and self._stale():
            notes.append("settings changed since the last compile: Compile, Train or Step "
                         "recompiles and restarts from step 0")
        errors = []
        if self.runner.status == "error" and self.runner.error is not None:
            err = self.runner.error
            errors.append(f"{type(err).__name__}: {' '.join(str(err).split())}")
        self._show(self.state.problems() + errors, notes)
        self._update_buttons()
        if self._outdated != self._views_outdated():
            self._redraw()

    def _validated(self) -> "dict | None":
        try:
            return validate(self.state.config)
        except ConfigError:
            return None

    def _views_outdated(self) -> bool:
        """Whether the compiled plan pictures another model, wafer or mapping than the
        controls now name (`views.outdated`); an invalid config pictures nothing."""
        current = self._validated()
        return self.runner.compiled and (current is None or
                                         views.outdated(self.runner.compiled_config, current))

    def _stale(self) -> bool:
        current = self._validated()
        core = lambda c: {k: v for k, v in c.items() if k not in RUN_ONLY_KEYS}  # noqa: E731
        return current is None or core(current) != core(self.runner.compiled_config or {})

    def _show(self, problems: list[str], notes: list[str]) -> None:
        parts = [f"<div style='color:#b00020'>✗ {escape(p)}</div>" for p in problems]
        parts += [f"<div style='color:#8a6d00'>• {escape(n)}</div>" for n in notes]
        self.message = "\n".join(problems + notes)
        self.notice.value = "".join(parts)

    def _update_buttons(self) -> None:
        status = self.runner.status
        busy = status in ("compiling", "running")
        blocked = bool(self.state.problems())
        b = self.buttons
        b["compile"].disabled = blocked or busy
        b["train"].disabled = blocked or busy
        b["train"].description = "Resume" if status == "paused" else "Train"
        b["pause"].disabled = not busy
        b["step"].disabled = blocked or status == "compiling"
        for c in CONTROLS:
            self.controls[c.key].disabled = busy or not c.ready

    # actions (the buttons call these; so can code) ------------------------------------------------
    def compile(self):
        """Check, then compile the current config; returns the Session. Raises ConfigError with
        every reason if the checks refuse it (the UI shows the same reasons)."""
        problems = self.state.problems()
        if problems:
            self._show(problems, [])
            raise ConfigError("; ".join(problems))
        try:
            return self.runner.compile(self.state.config)
        except Exception:                 # the compiler's own refusal: shown by _refresh
            raise
        finally:
            self._refresh()
            self._draw_idle()

    def train(self, steps: int | None = None) -> None:
        """Start training in the background (`steps` more, default the config's steps), or
        resume a paused run where it was going; returns at once."""
        if not self.runner.compiled or self._stale():
            self.compile()
        self.runner.train(self._train_steps(steps))

    def _train_steps(self, steps: int | None) -> int | None:
        r = self.runner
        if steps is None and not (r.status == "paused" and len(r.history) < r.target):
            steps = self.state.config["steps"]
        return steps

    def run(self, steps: int | None = None, timeout: float | None = None):
        """Train and wait until done; returns the History of this compile."""
        self.train(steps)
        self.wait(timeout)
        if self.runner.error is not None:
            raise self.runner.error
        return self.history

    def pause(self) -> None:
        self._autoplay = False
        self.runner.pause()

    def step(self, n: int = 1) -> None:
        """Exactly `n` more steps (in the background; `wait()` for them)."""
        if not self.runner.compiled or self._stale():
            self.compile()
        self.runner.step(n)

    def wait(self, timeout: float | None = None) -> bool:
        job = self._job
        if job is not None:
            job.join(timeout)
        return self.runner.wait(timeout)

    def close(self) -> None:
        """Stop the training thread and close this workbench's widgets."""
        self.runner.stop()

        def close(widget):
            for child in getattr(widget, "children", ()):
                close(child)
            widget.close()
        close(self.widget)

    @property
    def history(self):
        return self.runner.history

    @property
    def losses(self) -> list[float]:
        return self.runner.history.losses

    @property
    def session(self):
        return self.runner.session

    def report(self):
        if self.session is None:
            raise RuntimeError("nothing is compiled yet: press Compile or call compile()")
        return self.session.report()

    def _background(self, then=None) -> None:
        """Compile in a thread (the kernel stays responsive), then `then()`."""
        def job():
            try:
                self.compile()
                if then is not None and self._autoplay:
                    then()
            except Exception:             # noqa: BLE001 - already shown in the message box
                pass
            finally:
                self._update_buttons()
        if self._job is not None and self._job.is_alive():
            return
        self._autoplay = True
        self._job = threading.Thread(target=job, name="wsebench-compile", daemon=True)
        self._job.start()
        self._update_buttons()

    def _click_compile(self) -> None:
        self._background()

    def _click_train(self) -> None:
        if self.runner.compiled and not self._stale():
            self.runner.train(self._train_steps(None))
        else:
            self._background(lambda: self.runner.train(self._train_steps(None)))

    def _click_step(self) -> None:
        if self.runner.compiled and not self._stale():
            self.runner.step()
        else:
            self._background(self.runner.step)

    # live views --------------------------------------------------------------------------------
    def _on_status(self, status: str) -> None:
        self._update_buttons()
        if status in ("paused", "done", "error"):
            self._draw(force=True)
        elif status == "ready":
            self._draw_idle()

    def _on_step(self, result) -> None:
        playing = self.runner._play.is_set()
        self._draw(force=not playing)


__all__ = ["Workbench", "PANELS"]
