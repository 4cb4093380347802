"""The Jupyter workbench: ipywidgets over the same pure API the CLI and the tests use.

- `state`: the config model, its controls, lessons and checks (no widgets: unit-testable; the
  checks ask the compiler's kernel models through `wsebench.precheck`); `controls` lists what
  the panels offer, `family_choices` the families offered, `sparsity_controls` how the
  Sparsity panel edits `sparsity:`;
- `runner`: training in a background thread with Train / Pause / Step (no widgets);
- `views`: what each live view shows when (progress, placeholders, clearing, the status line;
  no widgets), `render`: their PNG bytes (the report's own figures);
- `panels`, `live`, `workbench`: the ipywidgets wiring (`Workbench`);
- `lab`: self-checks for the classroom lab's exercises.
"""
from .runner import Runner
from .state import (CONTROLS, FAMILIES, LESSONS, PANELS, Control, Lesson, WorkbenchState, check,
                    hideable)
from .workbench import Workbench

__all__ = ["Workbench", "WorkbenchState", "Runner", "Control", "CONTROLS", "FAMILIES", "LESSONS",
           "Lesson", "PANELS", "check", "hideable"]
