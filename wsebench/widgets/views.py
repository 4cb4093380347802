"""What the workbench's views show, as plain data (no ipywidgets: unit-testable).

- `progress`: the bar's value, maximum and label; before a compile it counts to the config's
  steps (a lesson's 40), not to a made-up 1;
- `placeholders`: for each image view, the text that stands in for it until it has something
  true to show (no broken-image icon before the first compile, no old model's pictures after the
  model or the wafer changed);
- `status_line`: the status bar's parts, every number through `wsebench.formatting.fmt`.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from ..formatting import fmt

VIEWS = ("loss", "heatmap", "placement")

# Control widths: a label or an offered choice wider than its box is cut ("length distribu…",
# "universal_tran…"). JupyterLab draws widget text at 13 px in Helvetica's metrics, where
# Chromium measures "universal_transformer" 126 px wide: 6.0 px a character; CHAR_PX errs 10%
# wide, for fonts a little wider than Helvetica.
CHAR_PX = 6.6
LABEL_PAD_PX = 10           # between a control's label and its box
LABEL_PX = 150              # "weight sparsity level", the longest label, 21 characters
DROPDOWN_PX = 30            # a dropdown's arrow and padding
CONTROL_PX = LABEL_PX + DROPDOWN_PX + 140   # "universal_transformer", the longest choice


def text_px(text: str) -> float:
    """About how wide `text` is in a widget, in pixels (`CHAR_PX` a character; a label needs
    `LABEL_PAD_PX` more)."""
    return CHAR_PX * len(str(text))
# the config sections the heatmap and placement are pictures of: after a change there the views
# would describe another model or fabric (a family switch left the old model's plots up)
PICTURED = ("model", "wafer", "mapping")


@dataclass(frozen=True)
class Progress:
    value: int
    max: int
    description: str


def progress(done: int, target: int, steps: int) -> Progress:
    """`done` of `target` steps (the runner's); `steps`, the config's, while there is no target
    yet (not compiled, or compiled and not trained)."""
    total = max(target if target > 0 else steps, done, 1)
    return Progress(done, total, f"{fmt(done)} / {fmt(total)}")


def outdated(compiled_config: "dict | None", config: dict) -> bool:
    """Whether the compiled run pictures another model, wafer or mapping than the config now
    names (a family switch, a new width, another wafer): its views must go."""
    if compiled_config is None:
        return False
    return any(compiled_config.get(k) != config.get(k) for k in PICTURED)


def placeholders(compiled: bool, stepped: bool, stale: bool) -> dict[str, "str | None"]:
    """The text standing in for each view in `VIEWS`, or None where the view draws itself.
    `compiled`: a plan exists; `stepped`: a step has run since; `stale`: the plan is `outdated`."""
    if stale:
        text = "the model or wafer changed:\npress Compile, Train or Step"
        return dict.fromkeys(VIEWS, text)
    if not compiled:
        return {"loss": "no step yet:\npress Train or Step",
                "heatmap": "no plan yet:\npress Compile",
                "placement": "no plan yet:\npress Compile"}
    if not stepped:
        return {"loss": "no step yet:\npress Train or Step",
                "heatmap": "no step yet:\nutilization is measured by a step",
                "placement": None}
    return dict.fromkeys(VIEWS)


def status_line(status: str, last=None, backend: "str | None" = None) -> list[str]:
    """The status bar's parts (plain text; the caller escapes and joins them): the runner's
    status, and after a step its loss, simulated samples/s, harvest speedup and dynamic
    execution; the array backend once compiled."""
    parts = [status]
    if last is not None:
        parts += [f"step {fmt(last.step)}", f"loss {fmt(last.loss)}",
                  f"{fmt(last.samples_per_s)} samples/s (simulated)",
                  f"harvest speedup {fmt(last.harvest_speedup, 'x')}", *dynamic_parts(last)]
    if backend is not None:
        parts.append(f"backend {backend}")
    return parts


def status_html(status: str, last=None, backend: "str | None" = None, error=None) -> str:
    """`status_line` as the workbench shows it: the status in bold, the error in red."""
    parts = status_line(status, last, backend)
    text = [f"<b>{escape(parts[0])}</b>", *map(escape, parts[1:])]
    if status == "error" and error is not None:
        text.append(f"<span style='color:#b00020'>{escape(type(error).__name__)}: "
                    f"{escape(str(error))}</span>")
    return " · ".join(text)


def dynamic_parts(result) -> list[str]:
    """Dynamic execution in the status line: ponder steps (ACT) and skipped padding."""
    parts = []
    ponder = getattr(result, "mean_ponder_steps", None)
    if ponder is not None:
        parts.append(f"mean ponder steps {fmt(ponder)} "
                     f"({fmt(result.speedup_vs_fixed_depth, 'x')} vs fixed depth)")
    padding = getattr(result, "padding_fraction", None)
    if padding:
        parts.append(f"padding {fmt(padding, 'share')} not sent "
                     f"({fmt(result.speedup_vs_padded, 'x')} vs padded)")
    return parts


__all__ = ["VIEWS", "CHAR_PX", "LABEL_PAD_PX", "LABEL_PX", "CONTROL_PX", "DROPDOWN_PX", "text_px", "Progress", "progress", "outdated", "placeholders", "status_line", "status_html",
           "dynamic_parts"]
