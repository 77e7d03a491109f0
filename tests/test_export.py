"""Grades for the LMS: one row per student, one column per exercise, manual grades included, and Moodle's
grading worksheet filled in by participant id, without touching the downloaded file."""

import csv
import shutil
import zipfile

import pytest
from nbgrader.api import Gradebook

from coursekit import collect, export, layout, results as scores
from assignments import PW2, exercises

EXERCISES = list(exercises(PW2))


def _read(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def gradebook_copy(graded, tmp_path) -> layout.Course:
    """The graded batch's gradebook and report in a course directory of their own, to change freely."""
    course = layout.copy_course(tmp_path / "course")
    shutil.copy(graded.course.gradebook, course.gradebook)
    course.reports_of(PW2).mkdir(parents=True)
    shutil.copy(graded.course.reports_of(PW2) / "grading.csv", course.reports_of(PW2) / "grading.csv")
    return course


def test_grades_csv_has_a_row_per_student_and_a_column_per_exercise(graded):
    rows = {r["student_id"]: r for r in _read(graded.course.reports / "grades.csv")}
    assert set(rows) == set(graded.results)
    header = list(next(iter(rows.values())))
    assert header == ["student_id", "last_name", "first_name", "lms_participant_id"] + [
        f"{PW2} {c}" for c in ["status", *EXERCISES, "late_penalty", "total", "max_score"]]
    for student, result in graded.results.items():
        row = {c.removeprefix(f"{PW2} "): v for c, v in rows[student].items()}
        assert row["max_score"] == "100"
        if result.status == "graded":
            assert float(row["total"]) == result.score, student
            assert {e: float(row[e]) for e in EXERCISES} == result.exercises, student
        else:  # an empty cell, which an LMS import leaves alone, and the reason
            assert row["total"] == "" and row["status"] == result.status, student


def test_manual_grades_from_the_formgrader_are_exported(gradebook_copy):
    with Gradebook(scores.db_url(gradebook_copy)) as gb:
        gb.find_grade("test_lm_loss", PW2.notebook_id, PW2.name, "demo-mistakes").manual_score = 15
        gb.db.commit()
        expected = {g.name: g.score for g in gb.find_submission_notebook(PW2.notebook_id, PW2.name,
                                                                         "demo-mistakes").grades}
    row = next(r for r in export.rows(gradebook_copy, [PW2]) if r.student == "demo-mistakes")
    assert row.by_assignment[PW2.name].exercises["lm_loss"] == 15
    assert export.total(row.by_assignment[PW2.name]) == sum(v for k, v in expected.items() if k.startswith("test_"))


def test_moodle_worksheet_gets_grades_by_participant_id(gradebook_copy, tmp_path):
    archive = gradebook_copy.root / "downloaded" / PW2.name / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "moodle.zip", "w") as z:
        z.writestr("Demo Solution_1001_assignsubmission_file_/pw2_transformers.ipynb", "{}")
        z.writestr("Demo Mistakes_1002_assignsubmission_file_/pw2_transformers.ipynb", "{}")
        z.writestr("Demo Empty_1003_assignsubmission_file_/pw2_transformers.ipynb", "")
    assert collect.record_participants(gradebook_copy, PW2, scores.db_url(gradebook_copy))["demo-solution"] == {
        "first_name": "Demo", "last_name": "Solution", "lms_user_id": "1001"}
    worksheet = tmp_path / "Grades-PW2.csv"
    worksheet.write_text("Identifier,Full name,Email address,Status,Grade,Maximum Grade,Feedback comments\n"
                         "Participant 1001,Demo Solution,ds@example.org,Submitted,,100.00,\n"
                         "Participant 1002,Demo Mistakes,dm@example.org,Submitted,,100.00,\n"
                         "Participant 1003,Demo Empty,de@example.org,Submitted,,100.00,\n"
                         "Participant 1999,Someone Else,se@example.org,No submission,,100.00,\n", encoding="utf-8")
    before = worksheet.read_bytes()
    found = export.rows(gradebook_copy, [PW2])
    path, problems = export.fill_moodle_worksheet(gradebook_copy, PW2, found, worksheet)
    lines = {r["Identifier"]: r for r in _read(path)}
    mistakes = next(r for r in found if r.student == "demo-mistakes")
    assert lines["Participant 1001"]["Grade"] == "100"
    assert lines["Participant 1002"]["Grade"] == f"{export.total(mistakes.by_assignment[PW2.name]):g}"
    assert "lm_loss: " in lines["Participant 1002"]["Feedback comments"]
    assert lines["Participant 1003"]["Grade"] == "" and any("1003" in p and "not graded" in p for p in problems)
    assert lines["Participant 1999"]["Grade"] == ""
    assert any(p.startswith("demo-renamed: graded here but not in the worksheet") for p in problems)
    assert worksheet.read_bytes() == before and path.parent == gradebook_copy.reports_of(PW2)


def test_a_file_that_is_not_a_moodle_worksheet_is_refused_with_a_reason(gradebook_copy, tmp_path):
    wrong = tmp_path / "grades.csv"
    wrong.write_text("student,score\nada,10\n")
    with pytest.raises(export.WorksheetError, match="no Identifier and Grade columns"):
        export.fill_moodle_worksheet(gradebook_copy, PW2, export.rows(gradebook_copy, [PW2]), wrong)
    with pytest.raises(export.WorksheetError, match="does not exist"):
        export.fill_moodle_worksheet(gradebook_copy, PW2, [], tmp_path / "missing.csv")
