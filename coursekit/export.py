"""Grades for the LMS (`make export`): reports/grades.csv, and optionally Moodle's grading worksheet filled in.

The scores come from the gradebook, so manual grades and corrections made in the formgrader count.

- reports/grades.csv: one row per student, with their name and LMS participant id when the hand-ins came
  from a Moodle download (`make collect`), the points of every exercise, the total and the maximum. A
  student whose hand-in could not be graded has empty score cells and a status saying so: an LMS import
  leaves an empty cell alone instead of writing a 0, and the instructor decides. Moodle's gradebook import
  (Grades > Import > CSV file) takes it as it is: map the `total` column to the assignment's grade item
  and identify students by a column it knows (see the README).
- With WORKSHEET=<file>: a copy of the "grading worksheet" that a Moodle assignment gives (View all
  submissions > Grading action > Download grading worksheet), with the Grade column (and Feedback
  comments, when the worksheet has them) filled in, matched on Moodle's "Participant <id>" identifier;
  it is uploaded back with "Upload grading worksheet". The downloaded file itself is never modified.
"""

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from . import answers, grading, layout, spreadsheet


@dataclass
class Row:
    student: str
    first_name: str = ""
    last_name: str = ""
    lms_id: str = ""
    status: str = "not graded"
    exercises: dict[str, float] = field(default_factory=dict)
    total: float | None = None
    max_score: float = 0.0


def rows(course: layout.Course) -> list[Row]:
    """Every student in the gradebook, with the current scores (manual grades included) of the graded ones."""
    tests = grading.test_points(course)
    statuses = {}
    report = course.reports / "grading.csv"
    if report.is_file():
        statuses = {r.student: r.status for r in grading.read_report(report)}
    found = []
    with Gradebook(grading.db_url(course)) as gb:
        for student in sorted(gb.students, key=lambda s: s.id):
            row = Row(student.id, student.first_name or "", student.last_name or "", student.lms_user_id or "",
                      max_score=sum(tests.values()))
            try:
                submission = gb.find_submission(layout.ASSIGNMENT, student.id)
                notebook = gb.find_submission_notebook(layout.NOTEBOOK_ID, layout.ASSIGNMENT, student.id)
            except MissingEntry:
                submission = notebook = None
            if notebook is not None and statuses.get(student.id, "graded") == "graded":
                points = {g.name: g.score or 0.0 for g in notebook.grades}
                row.exercises = {answers.exercise_of(t): points.get(t, 0.0) for t in tests}
                row.total = max(0.0, sum(row.exercises.values()) - (submission.late_submission_penalty or 0.0))
                row.status = "graded"
            else:
                row.status = statuses.get(student.id, "not graded")
            found.append(row)
    return found


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def write_grades(course: layout.Course, found: list[Row]) -> Path:
    """reports/grades.csv: one row per student, one column per exercise, the total and the maximum."""
    exercises = [answers.exercise_of(t) for t in grading.test_points(course)]
    path = course.reports / "grades.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = spreadsheet.writer(f)
        writer.writerow(["student_id", "last_name", "first_name", "lms_participant_id", "status", *exercises, "total",
                         "max_score"])
        for r in found:
            writer.writerow([r.student, r.last_name, r.first_name, r.lms_id, r.status,
                             *(_number(r.exercises.get(e)) for e in exercises), _number(r.total), _number(r.max_score)])
    return path


PARTICIPANT = re.compile(r"(\d+)\s*$")


class WorksheetError(ValueError):
    pass


def fill_moodle_worksheet(course: layout.Course, found: list[Row], worksheet: Path) -> tuple[Path, list[str]]:
    """A filled-in copy of Moodle's grading worksheet, in reports/; and what could not be matched, in words."""
    if not worksheet.is_file():
        raise WorksheetError(f"{worksheet} does not exist: download it from the Moodle assignment "
                             "(View all submissions > Grading action > Download grading worksheet)")
    with worksheet.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header, lines = reader.fieldnames or [], list(reader)
    if "Identifier" not in header or "Grade" not in header:
        raise WorksheetError(f"{worksheet} is not a Moodle grading worksheet: it has no Identifier and Grade columns "
                             f"(its columns: {', '.join(header) or 'none'})")
    by_participant = {r.lms_id: r for r in found if r.lms_id}
    problems, matched = [], set()
    for line in lines:
        participant = PARTICIPANT.search(line["Identifier"] or "")
        row = by_participant.get(participant.group(1)) if participant else None
        if row is None:
            continue
        matched.add(row.student)
        if row.total is None:
            problems.append(f"{line['Identifier']} ({row.student}): {row.status}, left without a grade")
            continue
        line["Grade"] = _number(row.total)
        if "Feedback comments" in header:
            line["Feedback comments"] = "; ".join(f"{e}: {p:g}" for e, p in row.exercises.items())
    problems += [f"{r.student}: graded here but not in the worksheet (participant id {r.lms_id or 'unknown'})"
                 for r in found if r.status == "graded" and r.student not in matched]
    path = course.reports / f"moodle_{worksheet.name}"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = spreadsheet.writer(f)
        writer.writerow(header)
        writer.writerows([line.get(column) or "" for column in header] for line in lines)
    return path, problems
