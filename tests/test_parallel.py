"""Parallel grading gives the same results as sequential grading, and warm kernels as cold ones.

The session's batch (conftest.py) is graded by two workers at once, with warm kernels (forked from a zygote,
coursekit/warm_kernels.py, when the tests run as root). Here a sample of its hand-ins, chosen to cover every outcome
(full marks, partial credit, a repaired hand-in, a forged grade, a time-out, an unreadable file), is graded again in
a fresh course directory by a single worker with cold kernels: the scores, the notes, the check lines every student
reads and the gradebook must be the same.
"""

import shutil
from dataclasses import dataclass

import nbformat
import pytest
from nbgrader.api import Gradebook

from coursekit import autograde, checks, grading, layout, results as scores
from assignments import PW2

SAMPLE = ["demo-solution", "demo-mistakes", "demo-not-json", "deleted-tests", "forge-probe-data", "runaway-loop-in-answer"]


@dataclass
class Sequential:
    course: layout.Course
    results: dict[str, scores.Result]


@pytest.fixture(scope="module")
def sequential(graded, tmp_path_factory) -> Sequential:
    course = layout.copy_course(tmp_path_factory.mktemp("sequential"))
    grading.release(course, PW2)
    for student in SAMPLE:
        shutil.copytree(graded.course.submitted / student, course.submitted / student)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(autograde.WARM_SWITCH, "0")  # cold kernels
        return Sequential(course, {r.student: r for r in grading.grade(course, PW2, jobs=1)})


def _check_lines(course: layout.Course, student: str) -> dict[str, list[checks.Check]]:
    path = layout.submission_dir(course.autograded, student, PW2) / PW2.notebook
    return checks.by_test_cell(nbformat.read(path, as_version=4)) if path.is_file() else {}


def _gradebook_scores(course: layout.Course, student: str) -> dict[str, float]:
    with Gradebook(scores.db_url(course)) as gb:
        try:
            notebook = gb.find_submission_notebook(PW2.notebook_id, PW2.name, student)
        except Exception:
            return {}
        return {g.name: g.score for g in notebook.grades}


def test_the_sample_covers_every_kind_of_outcome(graded):
    results = [graded.results[s] for s in SAMPLE]
    assert {r.status for r in results} == {"graded", "not graded"}
    scores = [r.score for r in results if r.status == "graded"]
    assert 100 in scores and any(0 < s < 100 for s in scores)
    assert any("ran out of time" in r.note for r in results) and "suspicious code" in graded.results["forge-probe-data"].note


@pytest.mark.parametrize("student", SAMPLE)
def test_one_worker_cold_and_two_workers_warm_give_the_same_grades_notes_and_messages(graded, sequential, student):
    assert sequential.results[student] == graded.results[student]
    assert _check_lines(sequential.course, student) == _check_lines(graded.course, student)
    assert _gradebook_scores(sequential.course, student) == _gradebook_scores(graded.course, student)


def test_parallel_grading_keeps_one_log_section_per_hand_in_in_student_order(graded):
    log = autograde.log_path(graded.course, PW2).read_text()
    graded_students = sorted(s for s, r in graded.results.items() if r.status != "not graded")
    headers = [line.split(":")[0].strip("= ") for line in log.splitlines() if line.startswith("===== ")]
    assert headers == graded_students
