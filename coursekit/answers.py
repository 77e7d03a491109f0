"""Solution code out of the instructor notebook, and student answers into a release notebook.

A submission is the release notebook with answers written into its exercise cells (the cells nbgrader
marks as solution cells), exactly as a student would do it in Colab or Jupyter.
"""

import copy
import re

import nbformat

_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION[ \t]*\n?", re.S | re.M)


def grade_id(cell) -> str | None:
    """The cell's nbgrader grade_id, None for a cell nbgrader does not track."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_solution(cell) -> bool:
    """Whether the cell is an exercise (an nbgrader solution cell)."""
    return cell.get("cell_type") == "code" and bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def exercise_ids(nb: nbformat.NotebookNode) -> list[str]:
    """The grade_ids of the exercise (solution) cells, in notebook order."""
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")]


def strip_markers(source: str) -> str:
    """The solution cell as a student would write it: the solution regions kept, their markers removed."""
    return _REGION.sub(lambda m: m.group(2), source)


def solution_answers(source_nb: nbformat.NotebookNode) -> dict[str, str]:
    """The instructor's answer for every exercise cell, keyed by grade_id."""
    return {c.metadata["nbgrader"]["grade_id"]: strip_markers(c.source) for c in source_nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def fill(release_nb: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of the release notebook with the given exercise cells replaced by `answers` (by grade_id)."""
    unknown = set(answers) - set(exercise_ids(release_nb))
    if unknown:
        raise KeyError(f"no exercise cell with grade_id {sorted(unknown)} in the release notebook")
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def test_points(nb: nbformat.NotebookNode) -> dict[str, float]:
    """The points of every graded test cell that carries points, keyed by grade_id, in notebook order."""
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"]) for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"].get("points")
            and not c.metadata["nbgrader"].get("solution")}


def exercise_of(test_id: str) -> str:
    """The exercise a test cell checks: test cells are named test_<exercise>."""
    return test_id.removeprefix("test_")
