"""Answers move between the instructor notebook and a release notebook by exercise grade_id."""

import pytest

from coursekit import answers


def test_strip_markers_keeps_the_solution_and_its_indentation():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    assert answers.strip_markers(source) == "def f(x):\n    return x + 1\n"


def test_solution_answers_cover_every_exercise(source_nb):
    solution = answers.solution_answers(source_nb)
    assert list(solution) == answers.exercise_ids(source_nb)
    assert all("BEGIN SOLUTION" not in code for code in solution.values())


def test_fill_writes_answers_into_the_release_without_changing_it(source_nb, release_nb):
    filled = answers.fill(release_nb, {"lm_loss": "def lm_loss(*args):\n    return 0\n"})
    cell = next(c for c in filled.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "lm_loss")
    assert cell.source == "def lm_loss(*args):\n    return 0\n"
    assert "raise NotImplementedError()" in next(
        c for c in release_nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "lm_loss").source


def test_fill_rejects_an_unknown_exercise(release_nb):
    with pytest.raises(KeyError, match="no exercise cell"):
        answers.fill(release_nb, {"test_lm_loss": "x = 1"})
