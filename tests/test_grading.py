"""The grading cycle on the demo submissions: fair scores, mistakes blamed on their own exercise,
bad hand-ins reported without stopping the batch, and submitted/ left untouched."""

import csv

from nbgrader.api import Gradebook

from conftest import autograded_notebook, tree_digest
from coursekit import results as scores, samples
from assignments import PW2, exercises

EXERCISES = list(exercises(PW2))


def test_the_solution_gets_full_marks(graded):
    result = graded.results["demo-solution"]
    assert result.status == "graded"
    assert result.score == result.max_score == 100
    assert list(result.exercises) == EXERCISES


def test_the_untouched_release_gets_zero_without_timeouts(graded):
    result = graded.results["demo-untouched"]
    assert result.status == "graded" and result.score == 0
    assert set(result.exercises.values()) == {0}
    assert "ran out of time" not in result.note


def test_each_mistake_loses_points_in_its_own_exercise_only(graded):
    result = graded.results["demo-mistakes"]
    full = graded.results["demo-solution"].exercises
    for exercise, points in result.exercises.items():
        if exercise in samples.mistakes(PW2):
            assert points < full[exercise], f"the mistake in {exercise} was not caught"
        else:
            assert points == full[exercise], f"{exercise} lost points for a mistake made elsewhere"


def test_a_notebook_under_another_name_is_graded_and_reported(graded):
    result = graded.results["demo-renamed"]
    assert result.status == "graded" and result.score == 100
    assert "Copy of pw2_transformers.ipynb" in result.note


def test_unreadable_hand_ins_get_a_reason_and_no_grade(graded):
    reasons = {"demo-empty": "is empty", "demo-not-json": "not valid JSON", "demo-missing": "is missing"}
    for student, reason in reasons.items():
        result = graded.results[student]
        assert result.status == "not graded", student
        assert reason in result.note, (student, result.note)


def test_submitted_files_are_never_modified(graded):
    assert tree_digest(graded.course.submitted) == graded.submitted_before


def test_the_solution_runs_end_to_end_offline_in_grading_mode(graded):
    """Every cell of the solution ran without an error, and no test cell wrote to stderr (which scores 0)."""
    nb = autograded_notebook(graded, "demo-solution")
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, (cell.get("id"), errors[0].ename, errors[0].evalue)
        if cell.metadata.get("nbgrader", {}).get("grade"):
            assert not [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"], cell.id
    for grade_id in ("load_data", "load_tokenizer", "demo_training_run"):
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        assert cell.outputs == [], f"{grade_id} is skipped while graded: no check needs the data, the tokenizer or training"


def test_failed_checks_tell_the_student_what_is_wrong(graded):
    nb = autograded_notebook(graded, "demo-mistakes")
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "the scores are not scaled: divide Q Kᵀ by √d_k" in printed
    assert "padded positions are counted in the loss" in printed
    assert "decode should put the model in eval mode" in printed


def test_grades_are_in_the_gradebook(graded):
    with Gradebook(scores.db_url(graded.course)) as gb:
        assert gb.find_submission(PW2.name, "demo-solution").score == 100
        assert gb.find_submission(PW2.name, "demo-untouched").score == 0
        assert "demo-empty" in {s.id for s in gb.students}, "unreadable hand-ins are still listed"


def test_the_grading_report_has_a_row_per_student(graded):
    with (graded.course.reports_of(PW2) / "grading.csv").open() as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(graded.results)
    assert rows["demo-solution"]["lm_loss"] == "15" and rows["demo-empty"]["status"] == "not graded"
    assert scores.read_report(graded.course.reports_of(PW2) / "grading.csv") == list(graded.results.values())


def test_the_summary_lists_every_hand_in_that_needs_a_look(graded):
    summary = (graded.course.reports_of(PW2) / "grading.txt").read_text()
    assert "Student code ran in the sandbox." in summary
    for student, result in graded.results.items():
        if result.status != "graded" or result.note:
            assert f"- {student} ({result.status}): " in summary, student


def test_nbgraders_log_is_kept_and_names_every_graded_hand_in(graded):
    log = (graded.course.reports_of(PW2) / "autograde.log").read_text()
    for student, result in graded.results.items():
        if result.status != "not graded":
            assert f"Creating/updating student with ID '{student}'" in log, student
