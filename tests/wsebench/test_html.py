"""wsebench.html: the report fragment carries the compile-report summary and per-kernel table."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from wsebench import html


class _Tables(HTMLParser):
    """Collects the text of every table cell, row by row."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _rows(text: str) -> list[list[str]]:
    parser = _Tables()
    parser.feed(text)
    return parser.rows


def test_summary_has_the_compile_report_figures(tiny_run):
    report = tiny_run["report"]
    s = report.summary
    cells = dict(r for r in _rows(html.report_html(report)) if len(r) == 2)
    for label in ("Samples/s", "Compute Samples/s", "Transmission Samples/s", "Active PEs %",
                  "Compute Utilization %", "Harvest speedup (dense / measured)",
                  "Measured cycles/step", "Dense cycles/step (harvesting off)",
                  "Static estimate cycles/step", "Static estimate / measured"):
        assert label in cells, label
    assert cells["Measured cycles/step"] == html.fmt(s["step_cycles"])
    assert cells["Dense cycles/step (harvesting off)"] == html.fmt(s["dense_step_cycles"])
    assert cells["Harvest speedup (dense / measured)"] == f"{s['harvest_speedup']:.3f}x"


def test_kernel_table_has_one_row_per_kernel_with_every_column(tiny_run):
    report = tiny_run["report"]
    rows = _rows(html.report_html(report))
    header = next(r for r in rows if r and r[0] == "kernel")
    assert header == [label for _, label in html.KERNEL_COLUMNS]
    body = [r for r in rows if len(r) == len(header) and r[0] in report.kernel_names]
    assert [r[0] for r in body] == [k["name"] for k in report.kernels]
    for row, k in zip(body, report.kernels):
        assert row[header.index("rows")] == html.fmt(k["rows"])
        assert row[header.index("speedup vs dense")] == f"{k['speedup_vs_dense']:.3f}x"


def test_extra_rows_and_escaping(tiny_run):
    text = html.report_html(tiny_run["report"], extra={"note <b>": "a & b"})
    assert "note &lt;b&gt;" in text and "a &amp; b" in text


def test_repr_html_is_the_fragment(tiny_run):
    text = tiny_run["report"]._repr_html_()
    assert text == html.report_html(tiny_run["report"])
    # summary, kernels, and the ReLU outputs' densities (the tiny run is a ReLU MLP)
    assert "<html" not in text and text.count("<table") == 3
    assert "target vs actual density per tensor" in text and "natural" in text


def test_fmt_is_the_one_formatter():
    from wsebench.formatting import fmt
    assert html.fmt is fmt
    assert html.fmt(1234567.8) == "1,234,568"
    assert html.fmt(12) == "12"
    assert html.fmt(True) == "yes"
    assert html.fmt(float("inf")) == "unbounded"
    assert html.fmt(0.5) == "0.5000"


def test_write_report_links_pngs_that_exist(tiny_run, tmp_path):
    path = html.write_report(tmp_path, {"tiny": tiny_run}, title="t")
    text = path.read_text()
    images = re.findall(r"src='([^']+)'", text)
    assert "heatmap.png" in images and "loss.png" in images
    assert "balance.png" in images and "densities.png" in images    # a ReLU MLP has ReLU outputs
    for name in images:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert tiny_run["session"].plan.summary().splitlines()[0] in text


def test_tensor_table_shows_targets_and_natural_densities():
    rows = [{"tensor": "drop_small", "kind": "drop", "module": "act1", "kernel": "fc1",
             "target_density": 0.5, "density": 0.48, "elements": 100},
            {"tensor": "relu", "kind": "relu", "module": "", "kernel": "fc1",
             "target_density": None, "density": 0.52, "elements": 100}]
    text = html.tensor_table(rows)
    assert text.count("<tr>") == 3
    assert "50.0%" in text and "48.0%" in text and "natural" in text and "52.0%" in text


def test_numpy_numbers_read_like_python_ones(tiny_run):
    """float32 summaries once showed as `Compute Utilization % 5.9352627` and `1.753088e+06`."""
    import copy

    import numpy as np
    report = copy.copy(tiny_run["report"])
    report.summary = {**report.summary, "compute_utilization_pct": np.float32(5.9352627),
                      "samples_per_s": np.float32(1753088.0), "active_pes_pct": 26.171875}
    cells = dict(r for r in _rows(html.report_html(report)) if len(r) == 2)
    assert cells["Compute Utilization %"] == "5.9%"
    assert cells["Samples/s"] == "1,753,088"
    assert cells["Active PEs %"] == "26.2%"
    assert not re.search(r"\de[+-]\d", html.report_html(report))      # no exponents anywhere


def test_wide_tables_scroll_instead_of_being_cut_off(tiny_run):
    text = html.report_html(tiny_run["report"])
    kernels = text[text.index("<h4>Kernels</h4>"):]
    assert kernels.index("<div class='wsebench-scroll'>") < kernels.index("<table>")
    assert ".wsebench-report .wsebench-scroll{overflow-x:auto" in text
