"""The Report users see: the simulator's utilization report plus plots and an HTML view."""
from __future__ import annotations

from dataclasses import dataclass

from simulator.report import Report as _ReportData


@dataclass
class Report(_ReportData):
    def plot(self, ax=None, what: str = "utilization"):
        """Per-core heatmap of `what`: "utilization" (busy / step cycles), "sram" or "balance"
        (busy / busiest core of the kernel: the imbalance sparsity causes)."""
        from .plots import plot_heatmap
        return plot_heatmap(self, ax=ax, what=what)

    def plot_densities(self, ax=None):
        """Target vs actual density per drop output, ReLU output and masked weight."""
        from .plots import plot_densities
        return plot_densities(self, ax=ax)

    def _repr_html_(self) -> str:
        from .html import report_html
        return report_html(self)
