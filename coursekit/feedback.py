"""An nbgrader feedback preprocessor: a summary at the top of every student's feedback page.

nbgrader's feedback lists "Test cell (Score: 8 / 15)" entries without saying which exercise they are,
and the reasons for lost points are spread over the notebook. This puts a table first: every exercise,
its points, and each failed check with its reason (as the check lines printed them). It runs after
GetGrades (which puts the scores in the cells' metadata) and ClearHiddenTests (so that nothing here can
come from hidden test code: only printed check lines are used). Everything taken from the notebook is
HTML-escaped, since a student's code can print anything.
"""

import html

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from . import answers, checks, deadlines


def _escape(text: str) -> str:
    """Safe in a Markdown table cell: HTML-escaped, no pipes or line breaks to break the table."""
    return html.escape(text).replace("|", "&#124;").replace("\n", " ")


def summary(nb: nbformat.NotebookNode, grades: dict | None = None) -> str:
    """The Markdown table of exercises, points and failed checks of an autograded notebook with grades, after the
    total that the gradebook holds (`grades`: GetGrades' score, max_score and late_penalty), as in grades.csv."""
    lines = []
    if grades and grades.get("max_score") is not None:
        late = deadlines.feedback_late(grades)  # "submitted 2 days 3 hours late: −30% (−4.5 points)", from the gradebook
        score = max(0.0, float(grades.get("score") or 0))  # GetGrades' score is after the late penalty
        lines += [f"**Your score: {score:g} / {float(grades['max_score']):g}**" + (f" ({late})" if late else ""), ""]
    lines += ["## Your score per exercise", "",
              "| exercise | points | what to look at |", "|---|---|---|"]
    printed = checks.by_test_cell(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not (meta.get("grade") and meta.get("points") and not meta.get("solution")):
            continue
        failed = [c for c in printed.get(meta["grade_id"], []) if not c.passed]
        score = float(meta.get("score") or 0)
        if failed:
            notes = "<br>".join(f"✗ {_escape(c.description)}" + (f": {_escape(c.reason)}" if c.reason else "")
                                for c in failed)
        elif score < float(meta["points"]):
            notes = "the check cell did not finish: see its output below"
        else:
            notes = "all checks passed"
        lines.append(f"| [`{_escape(answers.exercise_of(meta['grade_id']))}`](#{meta['grade_id']}) "
                     f"| {score:g} / {float(meta['points']):g} | {notes} |")
    return "\n".join(lines)


class ExerciseSummary(Preprocessor):
    enabled = Bool(True, help="nbconvert's preprocessors are off unless enabled").tag(config=True)

    def preprocess(self, nb, resources):
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(summary(nb, resources.get("nbgrader"))))
        return nb, resources
