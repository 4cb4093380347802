"""wsebench.exercises: loose comparison of answers, verdicts that show as ✓/✗, and the score."""
from __future__ import annotations

import pytest

from wsebench import exercises as ex


@pytest.mark.parametrize("given, canonical", [
    ("ReLU + Drop", "relu + drop"), ("relu+drop", "relu + drop"), ("relu and dropout", "relu + drop"),
    ("  FC2 ", "fc2"), ("Yes", "yes"), ("y", "yes"), ("relu/tanh", "relu / tanh")])
def test_answers_are_compared_loosely(given, canonical):
    assert ex.normalize(given) == canonical


def test_a_wrong_choice_gets_the_hint_and_an_unknown_one_the_accepted_forms():
    wrong = ex.choice("q", "relu", "gelu", ["relu", "gelu"], right="gelu it is", hint="look again")
    assert wrong.ok is False and wrong.message.endswith("look again") and "gelu it is" not in wrong.message
    unknown = ex.choice("q", "swish", "gelu", ["relu", "gelu"], right="", hint="look again")
    assert unknown.ok is False and "'relu', 'gelu'" in unknown.message


def test_numbers_within_their_tolerance():
    assert ex.number("n", "3.1x", 3.0, 0.05, "", "").ok is True
    assert ex.number("n", 3.2, 3.0, 0.05, "", "").ok is False
    assert ex.number("n", "three", 3.0, 0.05, "", "").ok is False
    assert ex.number("n", None, 3.0, 0.05, "", "").ok is None


def test_the_score_counts_the_last_verdict_of_each_check():
    ex.score(reset=True)
    ex.choice("a", "x", "x", ["x", "y"], "", "")
    ex.choice("b", "y", "x", ["x", "y"], "", "")
    ex.choice("b", "x", "x", ["x", "y"], "", "")      # answered again: now right
    ex.choice("c", None, "x", ["x", "y"], "", "")
    s = ex.score(reset=True)
    assert (s.right, s.answered, s.total) == (2, 2, 3)
    assert "2 of 3 right" in s._repr_html_() and ex.score().total == 0


def test_a_verdict_renders_as_coloured_html():
    right = ex.verdict("x", True, "well done", "")
    assert "✓" in right._repr_html_() and "#1a7f37" in right._repr_html_()
    assert "✗" in ex.verdict("x", False, "", "hint").__str__()


@pytest.mark.parametrize("given", ["UP", " up ", "Up"])
def test_the_notebooks_choices_accept_case_and_spacing(given):
    assert ex.choice("q", given, "up", ["up", "down"], right="", hint="").ok is True
    assert ex.choice("q", given, "down", ["up", "down"], right="", hint="").ok is False


@pytest.mark.parametrize("given", ["y", "Yes", "TRUE", "yeah"])
def test_yes_and_its_synonyms(given):
    assert ex.choice("q", given, "yes", ["yes", "no"], right="", hint="").ok is True


def test_a_miss_reveals_neither_the_truth_nor_the_explanation():
    # a wrong number: the message holds the caller's hint, not the measured value
    wrong = ex.number("n", 5, truth=3.14159, tolerance=0.1, right="it was 3.14159", hint="scale it")
    assert wrong.ok is False and "3.14" not in str(wrong) and "scale it" in str(wrong)
    # an unknown choice lists every option the same way, so the list singles out none of them
    unknown = ex.choice("q", "fc9", "fc2", ["fc1", "fc2", "fc3"], right="fc2 it was", hint="look")
    listed = str(unknown)
    assert "fc2 it was" not in listed and listed.count("'fc2'") == listed.count("'fc1'") == 1
    # not answered yet: neither the truth nor the hint
    unanswered = ex.number("n", None, truth=3.14159, tolerance=0.1, right="it was 3.14159", hint="x")
    assert "3.14" not in str(unanswered) and unanswered.ok is None


def test_a_right_answer_gets_the_explanation():
    ok = ex.number("n", "3.1x", truth=3.14159, tolerance=0.1, right="area x time stays put", hint="h")
    assert ok.ok is True and "area x time stays put" in str(ok) and "not quite" not in str(ok)


def test_a_tie_accepts_each_of_the_tied_options_and_nothing_else():
    tied = ["blocks.0.qkv", "blocks.1.qkv"]
    options = tied + ["blocks.0.proj"]
    assert all(ex.choice("q", t.upper(), tied, options, "", "").ok for t in tied)
    assert ex.choice("q", "blocks.0.proj", tied, options, "", "").ok is False
