"""The Report users see: the simulator's utilization report plus plots and an HTML view."""
from __future__ import annotations

from dataclasses import dataclass

from simulator.report import Report as _ReportData


@dataclass
class Report(_ReportData):
    def plot(self, ax=None, what: str = "utilization"):
        """Per-core heatmap of `what`: "utilization" (busy / step cycles) or "sram"."""
        from .plots import plot_heatmap
        return plot_heatmap(self, ax=ax, what=what)

    def _repr_html_(self) -> str:
        from .html import report_html
        return report_html(self)
