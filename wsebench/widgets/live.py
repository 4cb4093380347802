"""The workbench's live views (a mixin of `Workbench`): progress, status line, loss curve,
per-core heatmap, placement map and report, updated in place from the runner.

What each view shows when is decided by the pure `views` module; the pictures come from
`render` (the report's own matplotlib figures).
"""
from __future__ import annotations

import time
from html import escape

import ipywidgets as W

from . import render, views
from .panels import image, titled

REDRAW_SECONDS = 0.5        # while playing, views redraw at most this often


class LiveViews:
    """Needs `runner`, `state`, `_draw_lock`, `_last_draw`, `_draw_cost`, `_loss_plot`,
    `_outdated` and `_views_outdated()` from the Workbench."""

    def _build_views(self) -> W.HBox:
        """The progress bar, status line, the three pictures (placeholders until there is
        something to draw) and the report; returns the pictures' row."""
        bar = views.progress(0, 0, self.state.get("steps"))
        self.progress = W.IntProgress(value=bar.value, min=0, max=bar.max,
                                      description=bar.description,
                                      style={"description_width": "90px"},
                                      layout=W.Layout(width="280px"))
        self.progress.add_class("wsebench-progress")
        self.status = W.HTML()
        self.status.add_class("wsebench-status")
        holders = views.placeholders(compiled=False, stepped=False, stale=False)
        self.loss_image = image("wsebench-loss", f"{render.LOSS_PX}px",
                                render.placeholder_png(holders["loss"], render.LOSS_INCHES))
        self.loss_caption = W.HTML()
        self.heatmap = image("wsebench-heatmap", f"{render.VIEW_PX}px",
                             render.placeholder_png(holders["heatmap"]))
        self.heatmap_caption = W.HTML()
        self.placement = image("wsebench-placement", f"{render.VIEW_PX}px",
                               render.placeholder_png(holders["placement"]))
        # a wide kernel table scrolls inside the output instead of being cut off
        self.report_html = W.HTML(layout=W.Layout(max_width="100%", overflow="auto"))
        self.report_html.add_class("wsebench-report-view")
        width = f"{render.VIEW_PX + 10}px"
        return W.HBox([
            titled("Loss and samples/s", self.loss_image, self.loss_caption,
                   width=f"{render.LOSS_PX + 10}px"),
            titled("Per-core utilization", self.heatmap, self.heatmap_caption, width=width),
            titled("Placement", self.placement, width=width)],
            layout=W.Layout(flex_flow="row wrap"))

    def _redraw(self) -> None:
        """Every view from the runner's state: the measured views once a step has run on the
        current model, else the plan and placeholders."""
        if self.runner.history and not self._views_outdated():
            self.placement.value = render.placement_png(self.runner.session.plan)
            self._draw(force=True)
        else:
            self._draw_idle()

    def _draw(self, force: bool = False) -> None:
        with self._draw_lock:
            now = time.monotonic()
            self._draw_status()
            # while playing, drawing takes at most about a fifth of the time
            if not force and now - self._last_draw < max(REDRAW_SECONDS, 4 * self._draw_cost):
                return
            session, history = self.runner.session, list(self.runner.history)
            if session is None or not history:
                return
            self._outdated = False
            rep = session.report()
            self.loss_image.value = self._loss_plot.png(history)
            self.loss_caption.value = ""
            self.heatmap.value = render.heatmap_png(rep, len(history))
            self.heatmap_caption.value = render.heatmap_caption(rep)
            self.report_html.value = rep._repr_html_()
            self._last_draw = time.monotonic()
            self._draw_cost = self._last_draw - now

    def _draw_status(self) -> None:
        r, history = self.runner, self.runner.history
        bar = views.progress(len(history), r.target, self.state.get("steps"))
        self.progress.max = bar.max
        self.progress.value = bar.value
        self.progress.description = bar.description
        self.progress.bar_style = {"done": "success", "error": "danger"}.get(r.status, "")
        last = history[-1] if len(history) else None
        backend = r.session.backend if r.session is not None else None
        self.status.value = views.status_html(r.status, last, backend, r.error)

    def _draw_idle(self) -> None:
        """Views before any step: the placement and the plan, placeholders for the rest; only
        placeholders before a compile or once the controls name another model or wafer."""
        with self._draw_lock:
            self._draw_status()
            session = self.runner.session
            self._outdated = self._views_outdated()
            holders = views.placeholders(session is not None, False, self._outdated)
            self.loss_image.value = render.placeholder_png(holders["loss"], render.LOSS_INCHES)
            self.heatmap.value = render.placeholder_png(holders["heatmap"])
            self.loss_caption.value = ""
            self.heatmap_caption.value = ""
            if holders["placement"] is not None:
                self.placement.value = render.placeholder_png(holders["placement"])
                self.report_html.value = ""
                return
            plan = session.plan
            self.placement.value = render.placement_png(plan)
            notes = "".join(f"<div style='color:#777'>{escape(n)}</div>" for n in self.runner.notes)
            self.report_html.value = notes + render.plan_html(plan)
