"""ipywidgets for the workbench's controls and panels, made from `state.CONTROLS`.

Sizes are IntText/FloatText rather than bounded sliders on purpose: a value the wafer cannot
take (a negative width, a batch larger than the data) is typed, shown, and refused with a
message, instead of being silently clamped.
"""
from __future__ import annotations

from html import escape

import ipywidgets as W

from .state import CONTROLS, PANEL_NOTES, PANELS, Control
from .views import CONTROL_PX, LABEL_PX

LABEL_WIDTH = f"{LABEL_PX}px"
CONTROL_WIDTH = f"{CONTROL_PX}px"
PANEL_WIDTH = f"{CONTROL_PX + 20}px"


def make_control(control: Control, value, config: dict | None = None) -> W.Widget:
    common = dict(description=control.label, style={"description_width": LABEL_WIDTH},
                  layout=W.Layout(width=CONTROL_WIDTH), disabled=not control.ready)
    if control.kind == "int":
        w = W.IntText(value=0 if value is None else int(value), **common)
    elif control.kind == "float":
        w = W.FloatText(value=0.0 if value is None else float(value), **common)
    elif control.kind == "choice":
        options = control.choices(config)
        if value is not None and value not in options:
            options = options + (value,)      # a config's value the UI does not offer: show it
        w = W.Dropdown(options=options, value=value, **common)
    elif control.kind == "bool":
        w = W.Checkbox(value=bool(value), indent=False, **common)
    elif control.kind == "text":
        w = W.Text(value="" if value is None else str(value), continuous_update=False, **common)
    else:
        raise ValueError(f"unknown control kind {control.kind!r}")
    tip = control.note if not control.ready else control.help
    if tip:
        w.tooltip = tip
    w.add_class("wsebench-control")
    w.add_class("wsebench-" + control.key.replace(".", "-").replace("_", "-"))
    return w


def make_panels(controls: dict[str, W.Widget]) -> dict[str, W.VBox]:
    """One box per panel: a title, its controls, and a note on what has not landed yet (if
    `PANEL_NOTES` has one)."""
    boxes = {}
    for panel, title in PANELS.items():
        children = [W.HTML(f"<b>{escape(title)}</b>")]
        children += [controls[c.key] for c in CONTROLS if c.panel == panel]
        if panel in PANEL_NOTES:
            children.append(W.HTML(f"<span style='color:#777;font-size:0.85em'>"
                                   f"{escape(PANEL_NOTES[panel])}</span>",
                                   layout=W.Layout(width=CONTROL_WIDTH)))
        box = W.VBox(children, layout=W.Layout(border="1px solid #ddd", padding="4px 8px",
                                               margin="0 6px 6px 0", width=PANEL_WIDTH))
        box.add_class(f"wsebench-panel-{panel}")
        boxes[panel] = box
    return boxes


def make_buttons() -> dict[str, W.Button]:
    specs = {
        "compile": ("Compile", "cogs", "capture, map and place the model on the wafer"),
        "train": ("Train", "play", "train in the background until the steps are done"),
        "pause": ("Pause", "pause", "pause after the step in flight"),
        "step": ("Step", "step-forward", "exactly one training step"),
    }
    buttons = {}
    for name, (label, icon, tip) in specs.items():
        b = W.Button(description=label, icon=icon, tooltip=tip,
                     layout=W.Layout(width="100px"))
        b.add_class(f"wsebench-{name}")
        buttons[name] = b
    buttons["train"].button_style = "success"
    return buttons


def image(cls: str, width: str, placeholder: bytes) -> W.Image:
    """A view's image, showing `placeholder` (PNG bytes) until it has something to draw: an
    Image with no bytes is a broken-image icon in the browser."""
    img = W.Image(value=placeholder, format="png",
                  layout=W.Layout(width=width, height="auto", object_fit="contain"))
    img.add_class(cls)
    return img


def titled(title: str, *children, width: str | None = None) -> W.VBox:
    return W.VBox([W.HTML(f"<b>{escape(title)}</b>"), *children],
                  layout=W.Layout(margin="0 10px 0 0", width=width))
