"""HTML views of a run: `report_html` (a fragment, used by `Report._repr_html_`) and
`write_report` (a whole page with PNG figures next to it, written by the CLI).

The summary follows Cerebras' compile report: Samples/s, Compute Samples/s, Transmission
Samples/s, Active PEs %, Compute Utilization %, then harvesting and the static estimate next to
the measurement.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

from .formatting import fmt

_STYLE = """<style>
.wsebench-report table{border-collapse:collapse;margin:0.4em 0 1em 0;font-size:0.9em}
.wsebench-report th,.wsebench-report td{border:1px solid #ccc;padding:2px 8px;text-align:right}
.wsebench-report th{background:#f3f3f3}
.wsebench-report td.k,.wsebench-report th.k{text-align:left}
.wsebench-report pre{background:#f7f7f7;padding:0.6em;overflow-x:auto;font-size:0.85em}
.wsebench-report .wsebench-scroll{overflow-x:auto;max-width:100%}
</style>"""

KERNEL_COLUMNS = (
    ("name", "kernel"), ("kind", "kind"), ("rows", "rows"), ("cols", "cols"),
    ("replicas", "replicas"), ("pinned", "pinned"), ("cycles", "cycles"),
    ("dense_cycles", "dense cycles"), ("speedup_vs_dense", "speedup vs dense"),
    ("utilization", "utilization"), ("x_density", "x density"), ("dy_density", "dY density"),
    ("harvested_macs", "harvested MACs"), ("imbalance", "busiest / mean core"),
    ("sram_bytes_per_core", "SRAM/core (B)"),
)
_KERNEL_UNITS = {"speedup_vs_dense": "x", "imbalance": "x", "x_density": "share",
                 "dy_density": "share", "utilization": "share"}
TENSOR_COLUMNS = (("tensor", "tensor"), ("kind", "kind"), ("module", "module"),
                  ("kernel", "kernel"), ("target_density", "target density"),
                  ("density", "actual density"), ("elements", "elements"))


def _rows(pairs) -> str:
    return "".join(f"<tr><th class='k'>{escape(str(k))}</th><td>{escape(fmt(v))}</td></tr>"
                   for k, v in pairs)


def summary_rows(summary: dict) -> list[tuple[str, object]]:
    """The compile-report summary as (label, value) pairs."""
    s = summary
    rows = [
        ("Wafer", f"{s.get('wafer')} ({s.get('fabric')} cores)"),
        ("Samples/s", s.get("samples_per_s")),
        ("Compute Samples/s", s.get("compute_samples_per_s")),
        ("Transmission Samples/s", s.get("transmission_samples_per_s")),
        ("Active PEs %", _pct(s.get("active_pes_pct"))),
        ("Compute Utilization %", _pct(s.get("compute_utilization_pct"))),
        ("Mean utilization of active PEs %", _pct(s.get("mean_utilization_active_pct"))),
        ("Samples per step", s.get("samples_per_step")),
        ("Sparsity harvesting", s.get("harvest")),
        ("Measured cycles/step", s.get("step_cycles")),
        ("Dense cycles/step (harvesting off)", s.get("dense_step_cycles")),
        ("Harvest speedup (dense / measured)", _ratio(s.get("harvest_speedup"))),
        ("Executed MACs / dense MACs", _pair(s.get("executed_macs"), s.get("dense_macs"))),
        ("Mean density of induced (drop) outputs", _percent(s.get("drop_density"))),
        ("Mean density of ReLU outputs", _percent(s.get("relu_density"))),
        ("Mean ponder steps", _pair(s.get("mean_ponder_steps"), s.get("max_steps"), "of")),
        ("Running share per recurrent step", _fractions(s.get("active_fraction_per_step"))),
        ("Fixed-depth cycles/step (every position, every step)", s.get("fixed_depth_step_cycles")),
        ("Speedup over fixed depth", _ratio(s.get("speedup_vs_fixed_depth"))),
        ("Padding share of the batch", _percent(s.get("padding_fraction"))),
        ("Padded cycles/step (pads sent)", s.get("padded_step_cycles")),
        ("Speedup over padded", _ratio(s.get("speedup_vs_padded"))),
        ("Static estimate cycles/step", s.get("estimate_step_cycles")),
        ("Static estimate / measured", _ratio(s.get("estimate_vs_measured"))),
        ("Max SRAM per core (B)", _pair(s.get("max_sram_bytes_per_core"),
                                         s.get("sram_bytes_per_core"), "of")),
    ]
    return [(k, v) for k, v in rows if v is not None]


def _fractions(values):
    return None if values is None else ", ".join(fmt(v, "share") for v in values)


def _pct(value):
    return None if value is None else fmt(value, "%")


def _percent(value):
    return None if value is None else fmt(value, "share")


def _ratio(value):
    return None if value is None else fmt(value, "x")


def _pair(a, b, word="/"):
    return None if a is None or b is None else f"{fmt(a)} {word} {fmt(b)}"


def kernel_table(kernels: list[dict]) -> str:
    head = "".join(f"<th class='k'>{escape(label)}</th>" if key in ("name", "kind")
                   else f"<th>{escape(label)}</th>" for key, label in KERNEL_COLUMNS)
    body = []
    for k in kernels:
        cells = []
        for key, _ in KERNEL_COLUMNS:
            value = k.get(key, "")
            cls = " class='k'" if key in ("name", "kind") else ""
            cells.append(f"<td{cls}>{escape(fmt(value, _KERNEL_UNITS.get(key)))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return scroll(f"<table><tr>{head}</tr>{''.join(body)}</table>")


def scroll(table: str) -> str:
    """A wide table in a box that scrolls sideways instead of being cut off (a notebook's
    output area hides what overflows it)."""
    return f"<div class='wsebench-scroll'>{table}</div>"


def report_html(report, extra: dict | None = None) -> str:
    """A self-contained HTML fragment: summary table, per-kernel table, and `extra` rows."""
    parts = [_STYLE, "<div class='wsebench-report'>", "<h4>Wafer report</h4>",
             f"<table>{_rows(summary_rows(report.summary))}</table>"]
    if extra:
        parts += ["<h4>Run</h4>", f"<table>{_rows(extra.items())}</table>"]
    parts += ["<h4>Kernels</h4>", kernel_table(report.kernels)]
    if getattr(report, "tensors", None):
        parts += ["<h4>Sparsity: target vs actual density per tensor (last step)</h4>",
                  tensor_table(report.tensors)]
    parts.append("</div>")
    return "\n".join(parts)


def _density(value) -> str:
    return "natural" if value is None else fmt(value, "share")


def tensor_table(tensors: list[dict]) -> str:
    """Drop outputs, ReLU outputs and masked weights: target vs measured density."""
    head = "".join(f"<th class='k'>{escape(label)}</th>" if i < 4 else f"<th>{escape(label)}</th>"
                   for i, (_, label) in enumerate(TENSOR_COLUMNS))
    body = []
    for t in tensors:
        cells = []
        for i, (key, _) in enumerate(TENSOR_COLUMNS):
            value = t.get(key, "")
            if key in ("target_density", "density"):
                value = _density(value) if key == "target_density" or value is not None else ""
            cls = " class='k'" if i < 4 else ""
            cells.append(f"<td{cls}>{escape(fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return scroll(f"<table><tr>{head}</tr>{''.join(body)}</table>")


def comparison_html(c) -> str:
    """A sparse run next to its dense baseline (`wsebench.sparsity.compare`)."""
    acc = lambda v: "" if v is None else fmt(v, "share")  # noqa: E731
    rows = [("", "sparse", "dense"),
            ("samples/s (simulated)", fmt(c.samples_per_s), fmt(c.dense_samples_per_s)),
            ("final loss (mean of last 5 steps)", fmt(c.final_loss), fmt(c.dense_final_loss)),
            ("accuracy", acc(c.accuracy), acc(c.dense_accuracy))]
    body = "".join("<tr>" + "".join(f"<td class='k'>{escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return (f"{_STYLE}<div class='wsebench-report'><p>speedup vs dense: <b>{fmt(c.speedup, 'x')}</b>"
            f"</p><table>{body}</table></div>")


def harvest_comparison(runs: dict) -> str:
    """Table of each run's measured vs dense cycles; with a harvest-on and a harvest-off run,
    the ratio of their measured cycles (the speedup harvesting bought)."""
    head = ("<tr><th class='k'>run</th><th>harvest</th><th>measured cycles/step</th>"
            "<th>dense cycles/step</th><th>dense / measured</th><th>samples/s</th>"
            "<th>final loss</th><th>accuracy</th></tr>")
    body = ""
    for label, run in runs.items():
        s = run["report"].summary
        body += (f"<tr><td class='k'>{escape(label)}</td><td>{fmt(s['harvest'])}</td>"
                 f"<td>{fmt(s['step_cycles'])}</td><td>{fmt(s['dense_step_cycles'])}</td>"
                 f"<td>{fmt(s['harvest_speedup'], 'x')}</td><td>{fmt(s['samples_per_s'])}</td>"
                 f"<td>{fmt(run['final_loss'])}</td><td>{fmt(run['accuracy'], 'share')}</td></tr>")
    out = scroll(f"<table>{head}{body}</table>")
    ratio = on_off_ratio(runs)
    if ratio is not None:
        out += (f"<p>Harvest off / harvest on, measured cycles per step: "
                f"<b>{fmt(ratio, 'x')}</b></p>")
    return out


def on_off_ratio(runs: dict) -> float | None:
    """Measured cycles of the harvest-off run over the harvest-on run, if both are present."""
    on = [r for r in runs.values() if r["report"].summary["harvest"]]
    off = [r for r in runs.values() if not r["report"].summary["harvest"]]
    if not on or not off:
        return None
    return off[0]["report"].summary["step_cycles"] / on[0]["report"].summary["step_cycles"]


def run_extra(run: dict) -> dict:
    """The run-level figures that sit next to a report: steps, loss, accuracy, wall time."""
    history = run["history"]
    return {"Steps trained": len(history), "First loss": history[0].loss,
            "Final loss": run["final_loss"], "Training accuracy": fmt(run["accuracy"], "share"),
            "Backend": run["session"].backend,
            "Wall-clock seconds (compile + train)": run.get("wall_seconds")}


def write_report(out_dir, runs: dict, title: str = "wsebench report") -> Path:
    """Write `out_dir/report.html` for `runs` (label -> result of `wsebench.config.run`) with
    loss.png, heatmap.png, sram.png, placement.png, balance.png (per-core imbalance) and, when the
    run followed any sparse tensors, densities.png beside it. The first run is the main one."""
    from .plots import (plot_densities, plot_heatmap, plot_histories, plot_history, plot_placement,
                        save_png)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label, main = next(iter(runs.items()))
    report = main["report"]
    figures = {
        "loss.png": plot_history(main["history"]) if len(runs) == 1 else
        plot_histories({k: r["history"] for k, r in runs.items()}),
        "heatmap.png": plot_heatmap(report, what="utilization"),
        "sram.png": plot_heatmap(report, what="sram"),
        "placement.png": plot_placement(report),
        "balance.png": plot_heatmap(report, what="balance"),
    }
    if report.tensors:
        figures["densities.png"] = plot_densities(report)
    for name, fig in figures.items():
        save_png(fig, out / name)
    page = _page(title, label, main, runs)
    path = out / "report.html"
    path.write_text(page)
    return path


def _page(title: str, label: str, main: dict, runs: dict) -> str:
    img = "<img src='{0}' alt='{0}' style='max-width:48%;margin:4px'>".format
    plan = main["session"].plan.summary()
    config = json.dumps(main["config"], indent=2, default=str)
    return "\n".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title></head>",
        "<body style='font-family:sans-serif;max-width:1100px;margin:auto'>",
        f"<h1>{escape(title)}</h1>", f"<h2>Main run: {escape(label)}</h2>",
        report_html(main["report"], extra=run_extra(main)),
        "<h2>Sparsity harvesting: measured vs dense</h2>",
        f"<div class='wsebench-report'>{harvest_comparison(runs)}</div>",
        "<h2>Figures</h2>", img("loss.png"), img("heatmap.png"), img("placement.png"),
        img("sram.png"), img("balance.png"),
        img("densities.png") if main["report"].tensors else "",
        "<h2>Plan</h2>", f"<div class='wsebench-report'><pre>{escape(plan)}</pre></div>",
        "<h2>Config</h2>", f"<div class='wsebench-report'><pre>{escape(config)}</pre></div>",
        "</body></html>"])
