"""The formgrader in JupyterLab (`make lab`) with this repository's configuration: it lists the assignment and its
submissions, with their grades, and shows no warning (the exchange points at build/exchange, see nbgrader_config.py).

JupyterLab serves a small graded course (gradebooks.py: the solution, typical mistakes, an empty file) exactly as
`make lab` does; headless Chromium opens the formgrader's pages."""

import pytest

import gradebooks
from browser import chromium_page


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> gradebooks.SmallCourse:
    return gradebooks.small_sqlite_course(tmp_path_factory)


@pytest.fixture(scope="module")
def lab(small, tmp_path_factory):
    with gradebooks.jupyter_lab(small.course, tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.fixture
def page():
    with chromium_page() as page:
        console_errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
        page.console_errors = console_errors
        yield page


def test_the_formgrader_lists_the_assignment_and_its_submissions(lab, page, small):
    rows = gradebooks.formgrader_assignments(page, lab)
    # every folder in submitted/ counts, the unreadable hand-in too; pw3 is listed, with no hand-ins yet
    assert sorted(rows, key=lambda r: r["name"]) == [
        {"name": "pw2_transformers", "status": "draft", "submissions": str(len(gradebooks.HANDINS))},
        {"name": "pw3_decoding", "status": "draft", "submissions": "0"}]


def test_the_formgrader_shows_no_warning_and_no_error(lab, page):
    gradebooks.formgrader_assignments(page, lab)
    assert gradebooks.visible_alerts(page) == []
    assert page.locator("[id^=warning-]").count() == 0, "nbgrader's exchange / course id warnings"
    # the "Current configuration" panel is off: it would print the gradebook's URL, and any password in it
    assert page.locator("#config").count() == 0
    assert page.js_errors == [] and page.console_errors == []
    assert "not serializable" not in lab.log.read_text()


def test_the_submissions_page_lists_every_student_with_the_grades_of_make_grade(lab, page, small):
    submissions = gradebooks.formgrader_submissions(page, lab)
    assert sorted(submissions) == sorted(gradebooks.HANDINS)
    for student in gradebooks.GRADED_STUDENTS:
        result = small.results[student]
        assert submissions[student] == {"status": "graded", "score": f"{result.score:g} / {result.max_score:g}"}
    assert small.results["alan-turing"].score < 100  # the mistakes are visible in the formgrader too
    # the empty hand-in has no grade; the formgrader offers to autograde it (it would fail: see reports/grading.txt)
    assert submissions["grace-hopper"]["status"] == "needs autograding"
    assert gradebooks.visible_alerts(page) == []
    assert page.js_errors == [] and page.console_errors == []
