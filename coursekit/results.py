"""Every student's result for one assignment, with the gradebook as the one source of truth for scores.

A result is a student's status (graded, not graded, failed), the points of every exercise, the late penalty and
the score after it, and a note (what intake fixed, why a hand-in was not graded). Grading records the statuses and
notes in reports/<assignment>/grading.csv; the points are always read again from the gradebook (`current`), so
that manual grades given in the formgrader and nbgrader's late penalties count everywhere: grading.csv,
grading.txt, the class report, grades.csv and the feedback pages all show the same numbers.
"""

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from . import answers, layout, spreadsheet


@dataclass
class Result:
    student: str
    status: str                 # graded | not graded | failed
    score: float = 0.0          # after the late penalty
    max_score: float = 0.0
    exercises: dict[str, float] = field(default_factory=dict)
    note: str = ""
    late_penalty: float = 0.0
    # past the due date and the student's extension, from the gradebook (not in the CSV, so not compared)
    seconds_late: float = field(default=0.0, compare=False)


def db_url(course: layout.Course) -> str:
    """The gradebook's URL, the same as nbgrader's (see layout.gradebook_url): $GRADEBOOK_URL or SQLite gradebook.db."""
    return course.gradebook_url


def test_points(course: layout.Course, assignment: layout.Assignment) -> dict[str, float]:
    """The graded test cells of the assignment's instructor notebook and their points."""
    return answers.test_points(nbformat.read(course.source_notebook(assignment), as_version=4))


def from_gradebook(gb: Gradebook, course: layout.Course, assignment: layout.Assignment, result: Result,
                   tests: dict[str, float], just_graded: bool = False) -> Result:
    """`result` (graded, as grading recorded it) with its points as the gradebook has them now (auto or manual grade,
    late penalty); a hand-in the gradebook has no graded notebook for is `failed`, and so is one `just_graded`
    without an autograded notebook (nbgrader removes what it failed to grade)."""
    result.max_score = sum(tests.values())
    if result.status != "graded":  # not graded, or failed when it was graded: the gradebook's leftovers don't count
        return result
    try:
        submission = gb.find_submission(assignment.name, result.student)
        notebook = gb.find_submission_notebook(assignment.notebook_id, assignment.name, result.student)
    except MissingEntry:
        submission = notebook = None
    autograded = layout.submission_dir(course.autograded, result.student, assignment) / assignment.notebook
    if notebook is None or (just_graded and not autograded.is_file()):
        result.status, result.exercises, result.score, result.late_penalty = "failed", {}, 0.0, 0.0
        return result
    points = {g.name: g.score or 0.0 for g in notebook.grades}  # nbgrader's score: the manual grade where given
    result.status = "graded"
    result.exercises = {answers.exercise_of(t): points.get(t, 0.0) for t in tests}
    result.late_penalty = submission.late_submission_penalty or 0.0
    result.seconds_late = submission.total_seconds_late or 0.0
    result.score = max(0.0, sum(result.exercises.values()) - result.late_penalty)
    return result


def current(course: layout.Course, assignment: layout.Assignment) -> list[Result]:
    """The results recorded by the last grading of `assignment`, with the gradebook's scores of today."""
    recorded = read_report(report_path(course, assignment))
    tests = test_points(course, assignment)
    with Gradebook(db_url(course)) as gb:
        return [from_gradebook(gb, course, assignment, r, tests) for r in recorded]


def report_path(course: layout.Course, assignment: layout.Assignment) -> Path:
    return course.reports_of(assignment) / "grading.csv"


class NothingGraded(RuntimeError):
    pass


def graded_assignments(course: layout.Course) -> list[layout.Assignment]:
    """The assignments that have been graded in this course (they have a grading.csv)."""
    return [a for a in course.assignments() if report_path(course, a).is_file()]


FIXED_COLUMNS = ["student", "status", "score", "max_score", "late_penalty"]


def write_report(course: layout.Course, assignment: layout.Assignment, results: list[Result]) -> Path:
    """reports/<assignment>/grading.csv: one row per student, with the score of every exercise, the late penalty and a
    note (text that a spreadsheet would read as a formula is neutralised: see spreadsheet.py)."""
    path = report_path(course, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    exercises = [answers.exercise_of(t) for t in test_points(course, assignment)]
    with path.open("w", newline="") as f:
        writer = spreadsheet.writer(f)
        writer.writerow([*FIXED_COLUMNS, *exercises, "note"])
        for r in results:
            writer.writerow([r.student, r.status, f"{r.score:g}", f"{r.max_score:g}", f"{r.late_penalty:g}",
                             *(f"{r.exercises[e]:g}" if e in r.exercises else "" for e in exercises), r.note])
    return path


def read_report(path: Path) -> list[Result]:
    """The results written by write_report."""
    if not path.is_file():
        raise NothingGraded(f"No grading report yet ({path} is missing): run `make grade` first.")
    with path.open(newline="") as f:
        rows = [{spreadsheet.restore(k): spreadsheet.restore(v) for k, v in row.items()} for row in csv.DictReader(f)]
    fixed = {*FIXED_COLUMNS, "note"}
    return [Result(r["student"], r["status"], float(r["score"]), float(r["max_score"]),
                   {k: float(v) for k, v in r.items() if k not in fixed and v != ""}, r["note"],
                   float(r.get("late_penalty") or 0)) for r in rows]


def write_summary(course: layout.Course, assignment: layout.Assignment, results: list[Result], sandboxed: bool) -> Path:
    """reports/<assignment>/grading.txt: counts, score statistics, the hand-ins that need a look, and the table."""
    graded = [r.score for r in results if r.status == "graded"]
    counts = {status: sum(r.status == status for r in results) for status in ("graded", "not graded", "failed")}
    lines = [f"Grading of {assignment}: {len(results)} hand-ins, "
             + ", ".join(f"{n} {status}" for status, n in counts.items()) + ".",
             "Student code ran in the sandbox." if sandboxed else "WARNING: student code ran WITHOUT the sandbox."]
    if graded:
        lines.append(f"Scores of the graded hand-ins: mean {statistics.mean(graded):.1f}, median "
                     f"{statistics.median(graded):g}, lowest {min(graded):g}, highest {max(graded):g} "
                     f"(out of {results[0].max_score:g}).")
    attention = [r for r in results if r.status != "graded" or r.note]
    if attention:
        lines += ["", "Needs a look (not graded, failed, repaired, suspicious code, time-outs):"]
        lines += [f"- {r.student} ({r.status}): {r.note}" for r in attention]
    lines += ["", table(results)]
    path = course.reports_of(assignment) / "grading.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def table(results: list[Result]) -> str:
    """A plain-text table of the scores, one line per student."""
    width = max([len(r.student) for r in results] + [7])
    lines = [f"{'student':<{width}}  {'status':<10}  {'score':>9}  note"]
    for r in results:
        score = f"{r.score:g}/{r.max_score:g}" if r.status == "graded" else "-"
        late = f" (late: -{r.late_penalty:g})" if r.status == "graded" and r.late_penalty \
            and " late" not in r.note else ""  # grading's note says it already: deadlines.late_text
        lines.append(f"{r.student:<{width}}  {r.status:<10}  {score:>9}  {r.note}{late}")
    return "\n".join(lines)
