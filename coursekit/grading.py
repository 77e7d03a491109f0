"""Autogrades the staged submissions with nbgrader and reports every student's score, or why there is none.

The grades live in nbgrader's gradebook (gradebook.db); this module adds the students nbgrader could
not see (unreadable hand-ins), and writes reports/grading.csv: one row per student, the score per
exercise, and a note saying what was fixed or what went wrong.
"""

import csv
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from . import answers, autograde, intake, layout, notebook_checks, spreadsheet
from .autograde import ConfigError, SandboxUnavailable  # noqa: F401 (part of this module's interface)


def nbgrader(course: layout.Course, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs an nbgrader command in the course root, after checking that nbgrader_config.py loads."""
    autograde.load_config(course.root)
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course.root,
                          env={**autograde.environment(), **(env or {})}, check=check)


def db_url(course: layout.Course) -> str:
    """The gradebook's URL, the same as nbgrader's (see layout.gradebook_url): $GRADEBOOK_URL or SQLite gradebook.db."""
    return course.gradebook_url


@dataclass
class Result:
    student: str
    status: str                 # graded | not graded | failed
    score: float = 0.0
    max_score: float = 0.0
    exercises: dict[str, float] = field(default_factory=dict)
    note: str = ""


def _run_problems(course: layout.Course, student: str) -> list[str]:
    """What went wrong while a student's notebook ran: the cells that ran out of time (nbclient's own time-out,
    or the grader's record that a check cell ran out of time)."""
    path = layout.submission_dir(course.autograded, student) / layout.NOTEBOOK
    if not path.is_file():
        return []
    nb = nbformat.read(path, as_version=4)
    timeouts, last = [], "the start"
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        last = grade_id or last
        if cell.cell_type != "code":
            continue
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        if any(o.output_type == "error" and "Timeout" in o.get("ename", "") for o in cell.outputs) \
                or notebook_checks.CELL_TIMED_OUT in printed:
            timeouts.append(grade_id or f"a cell of the student's after {last}")
    return ["ran out of time in " + ", ".join(timeouts)] if timeouts else []


def grade(course: layout.Course = layout.COURSE, sandboxed: bool = True, jobs: int | None = None) -> list[Result]:
    """Stages, autogrades (`jobs` hand-ins at a time, default one per core) and reports every student under
    the course's submitted/."""
    verdicts = intake.stage(course)
    outcomes = autograde.autograde(course, sandboxed, jobs) if any(v.gradable for v in verdicts) else {}
    tests = test_points(course)
    results = []
    with Gradebook(db_url(course)) as gb:
        for verdict in verdicts:
            gb.update_or_create_student(verdict.student)  # so that the export lists every student
            result = Result(verdict.student, "not graded", max_score=sum(tests.values()), note=verdict.note)
            if verdict.gradable:
                autograded = layout.submission_dir(course.autograded, verdict.student) / layout.NOTEBOOK
                try:
                    notebook = gb.find_submission_notebook(layout.NOTEBOOK_ID, layout.ASSIGNMENT, verdict.student)
                except MissingEntry:
                    notebook = None
                if notebook is None or not autograded.is_file():  # nbgrader removes what it failed to grade
                    result.status = "failed"
                    outcome = outcomes.get(verdict.student)
                    why = (outcome.reason if outcome and outcome.reason else "nbgrader could not grade it")
                    result.note = "; ".join(filter(None, [result.note, why]))
                else:
                    points = {g.name: g.score or 0.0 for g in notebook.grades}
                    result.status = "graded"
                    result.exercises = {answers.exercise_of(t): points.get(t, 0.0) for t in tests}
                    result.score = sum(result.exercises.values())
                    result.note = "; ".join(filter(None, [result.note, *_run_problems(course, verdict.student)]))
            results.append(result)
    return results


def test_points(course: layout.Course) -> dict[str, float]:
    """The graded test cells of the instructor notebook and their points."""
    return answers.test_points(nbformat.read(course.source_notebook, as_version=4))


def write_report(course: layout.Course, results: list[Result]) -> Path:
    """reports/grading.csv: one row per student, with the score of every exercise and a note (text that a spreadsheet
    would read as a formula is neutralised: see spreadsheet.py)."""
    path = course.reports / "grading.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    exercises = [answers.exercise_of(t) for t in test_points(course)]
    with path.open("w", newline="") as f:
        writer = spreadsheet.writer(f)
        writer.writerow(["student", "status", "score", "max_score", *exercises, "note"])
        for r in results:
            writer.writerow([r.student, r.status, f"{r.score:g}", f"{r.max_score:g}",
                             *(f"{r.exercises[e]:g}" if e in r.exercises else "" for e in exercises), r.note])
    return path


def write_summary(course: layout.Course, results: list[Result], sandboxed: bool) -> Path:
    """reports/grading.txt: counts, score statistics, the hand-ins that need a look, and the table."""
    graded = [r.score for r in results if r.status == "graded"]
    counts = {status: sum(r.status == status for r in results) for status in ("graded", "not graded", "failed")}
    lines = [f"Grading of {layout.ASSIGNMENT}: {len(results)} hand-ins, "
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
    path = course.reports / "grading.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_report(path: Path) -> list[Result]:
    """The results written by write_report."""
    with path.open(newline="") as f:
        rows = [{spreadsheet.restore(k): spreadsheet.restore(v) for k, v in row.items()} for row in csv.DictReader(f)]
    fixed = {"student", "status", "score", "max_score", "note"}
    return [Result(r["student"], r["status"], float(r["score"]), float(r["max_score"]),
                   {k: float(v) for k, v in r.items() if k not in fixed and v != ""}, r["note"]) for r in rows]


def table(results: list[Result]) -> str:
    """A plain-text table of the scores, one line per student."""
    width = max([len(r.student) for r in results] + [7])
    lines = [f"{'student':<{width}}  {'status':<10}  {'score':>9}  note"]
    for r in results:
        score = f"{r.score:g}/{r.max_score:g}" if r.status == "graded" else "-"
        lines.append(f"{r.student:<{width}}  {r.status:<10}  {score:>9}  {r.note}")
    return "\n".join(lines)
