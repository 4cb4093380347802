"""Every notebook runs top to bottom, headless, and shows what it promises (figures, reports).

The kernel gets WSEBENCH_FAST=1, which the notebooks read to shrink their runs. The notebooks
execute in the background from the run's first test on, in kernels of their own on the cores
the tests leave idle (`notebook_runs`, tests/conftest.py); each test checks its own notebook."""
from __future__ import annotations

import re

import pytest

from tests.notebook_runs import NOTEBOOKS

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed: pip install -e .[dev]")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed: pip install -e .[dev]")
pytest.importorskip("ipykernel", reason="ipykernel is not installed: pip install -e .[dev]")


def _outputs(nb, mime: str) -> int:
    return sum(mime in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_says_what_it_teaches_and_sums_up(path):
    nb = nbformat.read(path, as_version=4)
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "teaches" in first.source.lower(), \
        f"{path.name} must start with what it teaches"
    assert last.cell_type == "markdown" and "summary" in last.source.lower(), \
        f"{path.name} must end with a short summary"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_headless(path, notebook_runs):
    stored = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code"), \
        f"{path.name} is committed with outputs; strip them"
    nb = notebook_runs[path].result()
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert _outputs(nb, "image/png") >= 1, f"{path.name} showed no figure"
    if "report()" in "".join(c.source for c in nb.cells):
        assert _outputs(nb, "text/html") >= 1, f"{path.name} calls report() but shows no HTML"
    if "Workbench" in "".join(c.source for c in nb.cells):
        assert _outputs(nb, "application/vnd.jupyter.widget-view+json") >= 1, \
            f"{path.name} makes a Workbench but displays no widget"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_links_the_glossary(path):
    if path.name == "00_wafer_101.ipynb":
        pytest.skip("the glossary's own notebook")
    first = nbformat.read(path, as_version=4).cells[0].source
    assert "00_wafer_101.ipynb#Glossary" in first, f"{path.name} does not link the glossary"


STUDENT = [p for p in NOTEBOOKS if p.parent.name != "teacher"]
CHECK = re.compile(r"\b(?:exercises\.(?:choice|number)|lab\.check_\w+)\(")
ANSWER = re.compile(r"^(answer_\w+)\s*=\s*(.+?)\s*(?:#.*)?$", re.M)


@pytest.mark.parametrize("path", STUDENT, ids=[p.name for p in STUDENT])
def test_every_student_notebook_has_exercises_a_score_and_no_answers(path):
    code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    checks = sum(len(CHECK.findall(source)) for source in code)
    assert checks >= 2, f"{path.name} has {checks} self-check(s); give it 2 or 3 'try this' prompts"
    assert any(s.strip() in ("exercises.score()", "lab.score()") for s in code), \
        f"{path.name} has no score cell (exercises.score()) after its checks"
    answers = [m for source in code for m in ANSWER.findall(source)]
    assert answers, f"{path.name}: its checks read no answer_... variable"
    given = [name for name, value in answers if value != "None"]
    assert not given, f"{path.name} holds answers ({', '.join(given)}); leave them None for the student"
