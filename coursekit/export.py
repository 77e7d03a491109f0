"""Grades for the LMS (`make export`): reports/grades.csv, and optionally Moodle's grading worksheet filled in.

The scores come from the gradebook (results.current), so manual grades, corrections made in the formgrader and
late penalties count, exactly as in grading.csv, the class report and the feedback pages.

- reports/grades.csv: one row per student, with their name and LMS participant id when the hand-ins came
  from a Moodle download (`make collect`), and for every assignment (columns `<assignment> <name>`) its
  status, the points of every exercise, the late penalty, the total and the maximum. A student whose
  hand-in could not be graded (or who handed in nothing) has empty score cells and a status saying so: an
  LMS import leaves an empty cell alone instead of writing a 0, and the instructor decides. Moodle's
  gradebook import (Grades > Import > CSV file) takes it as it is: map each `<assignment> total` column to
  that assignment's grade item and identify students by a column it knows (see the README).
- With WORKSHEET=<file>: a copy of the "grading worksheet" that a Moodle assignment gives (View all
  submissions > Grading action > Download grading worksheet), with the Grade column (and Feedback
  comments, when the worksheet has them) filled in, matched on Moodle's "Participant <id>" identifier, in
  reports/<assignment>/; it is uploaded back with "Upload grading worksheet". The downloaded file itself is
  never modified. A worksheet belongs to one Moodle assignment: with several assignments, name it.
"""

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook

from . import answers, deadlines, layout, results, spreadsheet


@dataclass
class Row:
    """One student of the gradebook, with their result in each assignment."""
    student: str
    first_name: str = ""
    last_name: str = ""
    lms_id: str = ""
    by_assignment: dict[str, results.Result] = field(default_factory=dict)  # assignment -> result


def rows(course: layout.Course, assignments: list[layout.Assignment]) -> list[Row]:
    """Every student in the gradebook, with their current result (manual grades and late penalty included) in each
    of `assignments`: the results that grading recorded, scored by the gradebook (results.current)."""
    current = {a.name: {r.student: r for r in results.current(course, a)} for a in assignments}
    max_score = {a.name: sum(results.test_points(course, a).values()) for a in assignments}
    found = []
    with Gradebook(results.db_url(course)) as gb:
        for student in sorted(gb.students, key=lambda s: s.id):
            row = Row(student.id, student.first_name or "", student.last_name or "", student.lms_user_id or "")
            for a in assignments:
                row.by_assignment[a.name] = current[a.name].get(student.id) or results.Result(
                    student.id, "not handed in", max_score=max_score[a.name])
            found.append(row)
    return found


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def total(result: results.Result) -> float | None:
    """The grade of a result for the LMS: the score after the late penalty; None (an empty cell) unless graded."""
    return result.score if result.status == "graded" else None


def write_grades(course: layout.Course, assignments: list[layout.Assignment], found: list[Row]) -> Path:
    """reports/grades.csv: one row per student; for each assignment its status, one column per exercise, the late
    penalty, the total and the maximum, as `<assignment> <column>`."""
    columns = {a.name: [answers.exercise_of(t) for t in results.test_points(course, a)] for a in assignments}
    path = course.reports / "grades.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = spreadsheet.writer(f)
        header = ["student_id", "last_name", "first_name", "lms_participant_id"]
        for a in assignments:
            header += [f"{a} {c}" for c in ["status", *columns[a.name], "late_penalty", "total", "max_score"]]
        writer.writerow(header)
        for r in found:
            line = [r.student, r.last_name, r.first_name, r.lms_id]
            for a in assignments:
                result = r.by_assignment[a.name]
                graded = result.status == "graded"
                line += [result.status, *(_number(result.exercises.get(e)) if graded else "" for e in columns[a.name]),
                         _number(result.late_penalty if graded else None), _number(total(result)),
                         _number(result.max_score)]
            writer.writerow(line)
    return path


PARTICIPANT = re.compile(r"(\d+)\s*$")


class WorksheetError(ValueError):
    pass


def fill_moodle_worksheet(course: layout.Course, assignment: layout.Assignment, found: list[Row],
                          worksheet: Path) -> tuple[Path, list[str]]:
    """A filled-in copy of the Moodle grading worksheet of `assignment`, in reports/<assignment>/; and what could not
    be matched, in words."""
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
    result_of = {r.student: r.by_assignment[assignment.name] for r in found}
    problems, matched = [], set()
    for line in lines:
        participant = PARTICIPANT.search(line["Identifier"] or "")
        row = by_participant.get(participant.group(1)) if participant else None
        if row is None:
            continue
        matched.add(row.student)
        result = result_of[row.student]
        if total(result) is None:
            problems.append(f"{line['Identifier']} ({row.student}): {result.status}, left without a grade")
            continue
        line["Grade"] = _number(total(result))
        if "Feedback comments" in header:
            late = [deadlines.late_text(result.seconds_late, result.late_penalty, deadlines.policy(course))
                    if result.seconds_late > 0 else f"late penalty: -{result.late_penalty:g}"] if result.late_penalty \
                or result.seconds_late > 0 else []
            line["Feedback comments"] = "; ".join([f"{e}: {p:g}" for e, p in result.exercises.items()] + late)
    problems += [f"{r.student}: graded here but not in the worksheet (participant id {r.lms_id or 'unknown'})"
                 for r in found if result_of[r.student].status == "graded" and r.student not in matched]
    path = course.reports_of(assignment) / f"moodle_{worksheet.name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = spreadsheet.writer(f)
        writer.writerow(header)
        writer.writerows([line.get(column) or "" for column in header] for line in lines)
    return path, problems
