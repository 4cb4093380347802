"""Self-checks for the notebooks' exercises: a verdict shown as a coloured ✓ or ✗ with a hint,
answers compared loosely (case, spacing, synonyms), and a score at the end.

    from wsebench import exercises
    exercises.choice("1a", answer, truth="fc2", options=["fc1", "fc2", "fc3"],
                     right="fc2 harvested the most.", hint="Read the 'dense / measured' column.")
    exercises.number("3", answer, truth=3.1, tolerance=0.15, right="...", hint="...")
    exercises.score()

A check never holds the answer: the caller measures `truth` from the student's own runs. A
verdict shows as HTML in Jupyter (so a check cell prints no stray True/False), reads as its
text elsewhere, and is truthy exactly when the answer is right. On a miss a choice lists the
forms it accepts (every option, so the list does not give the answer away).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

# words a student may write for the same thing; each maps to the form the checks compare
SYNONYMS = {"dropout": "drop", "dropped": "drop", "and": "+", "with": "+", "plus": "+",
            "y": "yes", "yeah": "yes", "true": "yes", "n": "no", "false": "no"}

_results: dict[str, bool | None] = {}


def normalize(text) -> str:
    """`text` as the checks compare it: case-folded, words split at spaces and around + - / ,
    synonyms replaced, one space between words."""
    words = re.findall(r"[+/,-]|[^\s+/,-]+", str(text).casefold())
    return " ".join(SYNONYMS.get(w, w) for w in words)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: `ok` is True (right), False (wrong) or None (not answered)."""
    name: str
    ok: bool | None
    message: str

    def __bool__(self) -> bool:
        return bool(self.ok)

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "…"}[self.ok]

    def __str__(self) -> str:
        return f"{self.mark} {self.name}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        color = {True: "#1a7f37", False: "#c62828", None: "#6e7781"}[self.ok]
        return (f'<div style="color:{color};font-size:1.05em"><b>{self.mark} {escape(self.name)}'
                f"</b>: {escape(self.message)}</div>")


def verdict(name: str, ok: bool | None, right: str, hint: str) -> Verdict:
    """Record and return the verdict of check `name` (the last one of a name counts)."""
    _results[name] = ok
    if ok is None:
        message = "not answered yet: set the answer variable above, then run this cell again"
    else:
        message = f"right. {right}" if ok else f"not quite. {hint}"
    return Verdict(name, ok, message.strip())


def choice(name: str, answer, truth, options, right: str, hint: str) -> Verdict:
    """`answer` against `truth`, one of `options` (or several of them, where the measurement
    ties: two kernels equally busy), compared with `normalize`."""
    if answer is None:
        return verdict(name, None, right, hint)
    given, forms = normalize(answer), {normalize(o): o for o in options}
    if given not in forms:
        listed = ", ".join(repr(o) for o in options)
        return verdict(name, False, right, f"{answer!r} is none of the answers this check knows: "
                                           f"give one of {listed}. {hint}")
    truths = [truth] if isinstance(truth, str) else list(truth)
    return verdict(name, given in {normalize(t) for t in truths}, right, hint)


def number(name: str, answer, truth: float, tolerance: float, right: str, hint: str) -> Verdict:
    """`answer` (a number, or text that reads as one, e.g. "3.1x") within `tolerance` (a
    fraction) of `truth`."""
    if answer is None:
        return verdict(name, None, right, hint)
    value = _as_number(answer)
    if value is None:
        return verdict(name, False, right, f"{answer!r} is not a number. {hint}")
    return verdict(name, abs(value - truth) <= tolerance * abs(truth), right, hint)


def _as_number(answer) -> float | None:
    if isinstance(answer, bool):
        return None
    try:
        return float(str(answer).strip().rstrip("x×").strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class Score:
    right: int
    answered: int
    total: int

    def __str__(self) -> str:
        return f"score: {self.right} of {self.total} right ({self.total - self.answered} not answered)"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<div style='font-size:1.15em'><b>{escape(str(self))}</b></div>"


def score(reset: bool = False) -> Score:
    """The checks run so far in this kernel: how many are right, of how many."""
    out = Score(sum(ok is True for ok in _results.values()),
                sum(ok is not None for ok in _results.values()), len(_results))
    if reset:
        _results.clear()
    return out
