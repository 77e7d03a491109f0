"""A course of two practical works in one course directory, run with the commands an instructor types (the CLI
behind the Makefile): each command acts on one assignment or on every one that has work, no file of one
assignment is touched by the other's commands, grades.csv holds both, and the gradebook is the one source of
truth for scores: a manual grade or a late penalty given there shows in every output."""

import csv
import hashlib
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from assignments import PW2, PW3, exercises, max_points
from coursekit import cli, grading, layout, results as scores


def run(*argv: str) -> None:
    assert cli.main(list(argv)) == 0, argv


def files_of(course: layout.Course, assignment: layout.Assignment) -> dict[str, str]:
    """Every file of `assignment` in the course (a folder on its path is named after it), with its hash."""
    return {str(p.relative_to(course.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(course.root.rglob("*")) if p.is_file() and assignment.name in p.relative_to(course.root).parts}


@pytest.fixture(scope="module")
def two_practicals(tmp_path_factory):
    """pw2's whole cycle on its demo hand-ins, then pw3's, each named with --assignment, then the export of both;
    with what each assignment's files were after its own cycle."""
    course = layout.copy_course(tmp_path_factory.mktemp("two") / "course")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(cli, "COURSE", course)
    after = {}
    try:
        for assignment in (PW2, PW3):
            for command in ("release", "samples", "grade", "feedback", "report"):
                run(command, "--assignment", assignment.name, *(["--jobs", "2"] if command == "grade" else []))
            after[assignment.name] = files_of(course, assignment)
        run("export")
    finally:
        monkeypatch.undo()
    return course, after


def test_the_commands_of_one_assignment_touch_none_of_the_other_s_files(two_practicals):
    course, after = two_practicals
    assert after[PW2.name] and after[PW3.name]
    assert files_of(course, PW2) == after[PW2.name], "pw3's cycle changed a file of pw2"
    assert not set(after[PW2.name]) & set(after[PW3.name])


def test_each_assignment_has_its_own_reports_staging_and_feedback(two_practicals):
    course, _ = two_practicals
    for assignment in (PW2, PW3):
        assert (course.reports_of(assignment) / "grading.csv").is_file()
        assert (course.reports_of(assignment) / "class_report.html").is_file()
        assert any(course.staging(assignment).glob(f"*/{assignment}/{assignment.notebook}"))
        page = course.feedback / "demo-solution" / assignment.name / f"{assignment}.html"
        assert page.is_file(), page


def test_grades_csv_holds_both_practicals(two_practicals):
    course, _ = two_practicals
    with (course.reports / "grades.csv").open(newline="", encoding="utf-8") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    for assignment in (PW2, PW3):
        assert [f"{assignment} {e}" for e in exercises(assignment)] == [
            c for c in rows["demo-solution"] if c.startswith(f"{assignment} ") and c.split(" ", 1)[1] in exercises(assignment)]
        assert float(rows["demo-solution"][f"{assignment} total"]) == max_points(assignment)
        assert rows["demo-empty"][f"{assignment} status"] == "not graded"
        assert rows["demo-empty"][f"{assignment} total"] == ""
        assert 0 < float(rows["demo-mistakes"][f"{assignment} total"]) < max_points(assignment)


def test_make_grade_without_an_assignment_grades_every_assignment_with_hand_ins(tmp_path, monkeypatch):
    course = layout.copy_course(tmp_path / "course")
    monkeypatch.setattr(cli, "COURSE", course)
    run("samples", "--assignment", PW3.name)
    assert course.handed_in() == [PW3]
    graded = []
    monkeypatch.setattr(grading, "grade", lambda course_, assignment, sandboxed, jobs, **options: graded.append(assignment) or [])
    assert cli.main(["grade"]) == 1  # nothing graded by the stand-in: "nothing to grade"
    assert graded == [PW3]
    (course.submitted / "ada" / PW2.name).mkdir(parents=True)
    cli.main(["grade"])
    assert graded == [PW3, PW2, PW3]


def test_an_unknown_assignment_is_named_with_the_known_ones(capsys):
    assert cli.main(["grade", "--assignment", "pw9"]) == 2
    assert "no assignment 'pw9': the assignments are pw2_transformers, pw3_decoding" in capsys.readouterr().err


def _change_the_gradebook(course: layout.Course) -> None:
    """demo-solution's pw2 lm_loss gets a manual grade of 5 (of 15), and its notebook a late penalty of 3 points."""
    with Gradebook(course.gradebook_url) as gb:
        grade = gb.find_grade("test_lm_loss", PW2.notebook_id, PW2.name, "demo-solution")
        grade.manual_score = 5
        gb.find_submission_notebook(PW2.notebook_id, PW2.name, "demo-solution").late_submission_penalty = 3
        gb.db.commit()


def test_a_manual_grade_and_a_late_penalty_in_the_gradebook_show_in_every_output(two_practicals, monkeypatch, capsys):
    course, _ = two_practicals
    _change_the_gradebook(course)
    monkeypatch.setattr(cli, "COURSE", course)
    for command in ("export", "report", "feedback", "scores"):
        run(command, *(["--assignment", PW2.name] if command != "export" else []))
    expected = max_points(PW2) - 10 - 3

    solution = next(r for r in scores.current(course, PW2) if r.student == "demo-solution")
    assert (solution.score, solution.late_penalty, solution.exercises["lm_loss"]) == (expected, 3, 5)
    assert next(r for r in scores.read_report(scores.report_path(course, PW2)) if r.student == "demo-solution") == solution
    with (course.reports / "grades.csv").open(newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["student_id"] == "demo-solution")
    assert (float(row[f"{PW2} total"]), float(row[f"{PW2} lm_loss"]), float(row[f"{PW2} late_penalty"])) == (expected, 5, 3)
    assert float(row[f"{PW3} total"]) == max_points(PW3), "the other assignment keeps its grades"
    with (course.reports_of(PW2) / "exercise_pass_rates.csv").open(newline="") as f:
        lm_loss = next(r for r in csv.DictReader(f) if r["exercise"] == "lm_loss")
    with (course.reports_of(PW2) / "grading.csv").open(newline="") as f:
        full = sum(float(r["lm_loss"]) == 15 for r in csv.DictReader(f) if r["status"] == "graded")
    assert int(lm_loss["full_marks"]) == full
    page = Path(course.feedback / "demo-solution" / PW2.name / f"{PW2}.html").read_text(encoding="utf-8")
    assert f"Your score: {expected:g} / {max_points(PW2):g}" in page and "late penalty of 3 points" in page
    printed = capsys.readouterr().out
    assert f"{expected:g}/{max_points(PW2):g}" in printed and "(late: -3)" in printed
