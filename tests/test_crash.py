"""A kernel that dies, hangs or sends what can't be read costs the exercise it was running, and nothing else.

One pw3 batch, graded as `make grade` grades it (two workers, in the sandbox): honest work with typical mistakes, the
solution, and the same honest work with one answer that, when its check calls it, kills the kernel (SIGKILL, as the
out-of-memory killer does), exits it (os._exit), blocks it with the alarm and the interrupt ignored, or sends a message
that is not JSON; and one whose every answer exits the kernel (restarts are bounded). Each attacked exercise gets 0 and
its test cell says why in one line; every other exercise gets the points of the same answers without the attack, the
exercises after it included (they run in a fresh kernel); the note says which exercises were lost and why."""

import nbformat
import pytest

import kernel_attacks
from coursekit import answers, autograde, grading, kernel_failures, layout, samples
from assignments import PW3, exercises

# student: (the exercise whose answer attacks when its check calls it, the attack, why the exercise is not graded)
ATTACKS = {
    "killed-in-sample": ("sample", kernel_attacks.KILLED, kernel_failures.DIED),
    "exits-in-top-k": ("top_k_filter", kernel_attacks.EXITS, kernel_failures.DIED),
    "blocks-in-top-p": ("top_p_filter", kernel_attacks.BLOCKS, kernel_failures.HUNG),
    "malformed-in-beam-search": ("beam_search", kernel_attacks.MALFORMED,
                                 kernel_failures.UNREADABLE.format(detail="not JSON (JSONDecodeError)")),
}
EVERY_ANSWER_EXITS = "exits-in-every-answer"
OUT_OF_MEMORY = "out-of-memory-in-sample"  # a real one: memory used up, not a signal
WORKER_MEMORY_MB = 200  # what one hand-in may add to the grading worker's memory, at its peak


class Batch:
    pass


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Batch:
    course = layout.copy_course(tmp_path_factory.mktemp("crash") / "course")
    grading.release(course, PW3)
    source = nbformat.read(course.source_notebook(PW3), as_version=4)
    release = nbformat.read(course.release_notebook(PW3), as_version=4)
    solution = answers.solution_answers(source)
    honest = {**solution, **samples.mistakes(PW3)}

    def attacked(*exercises_, attack):
        return answers.fill(release, {**honest, **{e: kernel_attacks.when_checked(honest[e], e, attack)
                                                   for e in exercises_}})

    notebooks = {"honest": answers.fill(release, honest), "solution": answers.fill(release, solution),
                 **{student: attacked(exercise, attack=attack) for student, (exercise, attack, _) in ATTACKS.items()},
                 EVERY_ANSWER_EXITS: attacked(*exercises(PW3), attack=kernel_attacks.EXITS),
                 OUT_OF_MEMORY: attacked("sample", attack=kernel_attacks.EXHAUSTS_MEMORY)}
    for student, notebook in notebooks.items():
        folder = layout.submission_dir(course.submitted, student, PW3)
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / PW3.notebook)
    b = Batch()
    b.course = course
    b.results = {r.student: r for r in grading.grade(course, PW3, jobs=2)}
    b.log = autograde.log_path(course, PW3).read_text()
    b.leftover = kernel_attacks.sandbox_processes()
    return b


def printed(batch: Batch, student: str, grade_id: str) -> str:
    nb = nbformat.read(layout.submission_dir(batch.course.autograded, student, PW3) / PW3.notebook, as_version=4)
    cell = next(c for c in nb.cells if answers.grade_id(c) == grade_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_the_honest_hand_ins_of_the_batch_are_graded_as_usual(batch):
    assert batch.results["solution"].status == "graded" and batch.results["solution"].score == 100
    assert batch.results["solution"].note == "" and batch.results["honest"].note == ""
    assert 0 < batch.results["honest"].score < 100


@pytest.mark.parametrize("student", sorted(ATTACKS))
def test_a_kernel_failure_costs_the_exercise_it_ran_and_nothing_else(batch, student):
    exercise, _, reason = ATTACKS[student]
    result, honest = batch.results[student], batch.results["honest"]
    assert result.status == "graded"
    assert result.exercises[exercise] == 0
    assert {e: p for e, p in result.exercises.items() if e != exercise} == \
        {e: p for e, p in honest.exercises.items() if e != exercise}, "the other exercises keep their honest points"
    assert result.score <= honest.score
    points = answers.test_points(nbformat.read(batch.course.source_notebook(PW3), as_version=4))[f"test_{exercise}"]
    assert f"✗ not graded [0/{points:g}]: {reason}" in printed(batch, student, f"test_{exercise}")
    assert result.note == f"not graded ({reason}): {exercise}"


def test_memory_used_up_in_one_exercise_costs_that_exercise_only(batch):
    """sample's answer fills the sandbox's memory budget whenever a check calls it: sample gets 0, with the
    allocator's error in its check lines; every other exercise keeps the honest points, beam_search after it too."""
    result, honest = batch.results[OUT_OF_MEMORY], batch.results["honest"]
    assert result.status == "graded" and result.exercises["sample"] == 0
    assert {e: p for e, p in result.exercises.items() if e != "sample"} == \
        {e: p for e, p in honest.exercises.items() if e != "sample"}
    lines = printed(batch, OUT_OF_MEMORY, "test_sample")
    assert "memory" in lines.lower(), lines


def test_the_exercises_after_a_failure_are_graded_in_a_fresh_kernel(batch):
    """The kernel died in sample's check: beam_search, after it, needs the model and the cells before, run again."""
    after = batch.results["killed-in-sample"].exercises["beam_search"]
    assert after == batch.results["honest"].exercises["beam_search"] > 0
    assert "Checking beam_search:" in printed(batch, "killed-in-sample", "test_beam_search")


def test_restarts_are_bounded_and_what_is_left_is_not_graded_with_the_reason(batch):
    result = batch.results[EVERY_ANSWER_EXITS]
    names = exercises(PW3)
    stopped = kernel_failures.TOO_MANY.format(restarts=kernel_failures.MAX_RESTARTS + 1)
    assert result.status == "graded" and result.score == 0
    assert result.note == (f"not graded ({kernel_failures.DIED}): {', '.join(names[:kernel_failures.MAX_RESTARTS + 1])}; "
                           f"not graded ({stopped}): {', '.join(names[kernel_failures.MAX_RESTARTS + 1:])}")
    assert f"]: {stopped}" in printed(batch, EVERY_ANSWER_EXITS, f"test_{names[-1]}")


def test_the_worker_stays_small_and_no_kernel_survives(batch):
    for student in batch.results:
        memory = kernel_attacks.worker_memory(batch.log, student)
        assert memory["peak"] - memory["before"] < WORKER_MEMORY_MB, (student, memory)
    assert batch.leftover == [], "no process of a grading kernel's uid is left after grading"
