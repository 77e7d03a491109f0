"""What a hand-in's kernel sends is bounded before the grading worker parses it, and so is the time of a verdict.

One pw3 batch, graded as `make grade` grades it: honest work with typical mistakes, and the same work with one answer
that, when its check calls it, sends (signed with the kernel's key, on its IOPub socket, as a real message) probe data
nested 50,000 levels deep, 3 million items, one message of 200 MB, 300 messages of 20,000 items each, or 100
messages of 20 MB. Each costs at
most its own exercise, the batch is graded as usual, and the grading worker's memory stays within WORKER_MEMORY_MB of
what it was before the hand-in, at its peak (the log states it for every hand-in)."""

import json
import threading
import time

import nbformat
import pytest

import kernel_attacks
from coursekit import answers, autograde, bounded, checks, grading, kernel_failures, layout, samples
from assignments import PW3

# student: (the exercise whose answer sends it when its check calls it, what it sends, why the exercise is lost or None)
ATTACKS = {
    "nested-probe": ("apply_temperature", kernel_attacks.NESTED,
                     kernel_failures.UNREADABLE.format(detail="data nested over 64 levels deep")),
    "many-items-probe": ("top_k_filter", kernel_attacks.MANY_ITEMS,
                         kernel_failures.UNREADABLE.format(detail="over 100,000 items of data in one message")),
    "huge-probe": ("top_p_filter", kernel_attacks.HUGE, kernel_failures.UNREADABLE.format(
        detail=f"the connection was cut (a message part of more than {bounded.MAX_FRAME_BYTES // bounded.MiB} MB, "
               "or the kernel went away)")),
    "flood-of-probes": ("sample", kernel_attacks.FLOOD, None),
    "flood-of-big-messages": ("beam_search", kernel_attacks.FLOOD_OF_BIG_MESSAGES, None),
}
WORKER_MEMORY_MB = 200


class Batch:
    pass


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Batch:
    course = layout.copy_course(tmp_path_factory.mktemp("bounds") / "course")
    grading.release(course, PW3)
    source = nbformat.read(course.source_notebook(PW3), as_version=4)
    release = nbformat.read(course.release_notebook(PW3), as_version=4)
    honest = {**answers.solution_answers(source), **samples.mistakes(PW3)}
    notebooks = {"honest": answers.fill(release, honest)}
    for student, (exercise, attack, _) in ATTACKS.items():
        notebooks[student] = answers.fill(release, {**honest, exercise: kernel_attacks.when_checked(
            honest[exercise], exercise, attack)})
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


@pytest.mark.parametrize("student", sorted(ATTACKS))
def test_an_oversized_message_costs_at_most_its_exercise(batch, student):
    exercise, _, reason = ATTACKS[student]
    result, honest = batch.results[student], batch.results["honest"]
    assert result.status == "graded"
    assert {e: p for e, p in result.exercises.items() if e != exercise} == \
        {e: p for e, p in honest.exercises.items() if e != exercise}, "the other exercises keep their honest points"
    assert result.exercises[exercise] <= honest.exercises[exercise] and result.score <= honest.score
    if reason is not None:
        assert result.exercises[exercise] == 0 and result.note == f"not graded ({reason}): {exercise}"


def test_the_honest_hand_in_of_the_batch_is_graded_as_usual(batch):
    assert batch.results["honest"].status == "graded" and batch.results["honest"].note == ""
    assert 0 < batch.results["honest"].score < 100


@pytest.mark.parametrize("student", ["honest", *sorted(ATTACKS)])
def test_the_grading_worker_memory_is_bounded(batch, student):
    memory = kernel_attacks.worker_memory(batch.log, student)
    assert memory["peak"] - memory["before"] < WORKER_MEMORY_MB, memory


def test_no_kernel_survives_the_batch(batch):
    assert batch.leftover == []


# ------------------------------------------------------------------------------------------------ the bounds alone

@pytest.mark.parametrize("data, why", [
    (b"[" * 65 + b"]" * 65, "nested over 64 levels"),
    (b"[" + b"0," * 100_000 + b"0]", "over 100,000 items"),
    (b"[" + b'"a, b, [c]", ' * 100_000 + b"0]", "over 100,000 items"),
    (b'{"a": "cut', "not JSON"),
    (b"x" * (bounded.MAX_FRAME_BYTES + 1), "more than 64 MB"),
])
def test_the_unpacker_refuses_what_is_over_its_bounds_before_parsing(data, why):
    with pytest.raises(bounded.UnreadableMessage, match=why):
        bounded.loads(data)


def test_the_unpacker_reads_what_a_message_holds():
    text = b'{"a": [1, 2.5, {"b": "[[[[ ,,,, {{{{"}], "c": null}'
    assert bounded.loads(text) == {"a": [1, 2.5, {"b": "[[[[ ,,,, {{{{"}], "c": None}
    assert bounded.loads(b"[" * 64 + b"]" * 64) is not None  # 64 levels: at the bound
    printed = {"text": ", ".join(["[0]"] * 200_000)}  # a printed list: its commas and brackets are in a string
    assert bounded.loads(json.dumps(printed).encode()) == printed


def _loops_forever_and_swallows_exceptions():
    while True:
        try:
            time.sleep(0.001)
        except Exception:
            pass


@pytest.mark.parametrize("in_a_thread", [False, True], ids=["main thread", "another thread (a Dask worker)"])
def test_a_verdict_over_its_time_fails_its_check_with_the_reason(in_a_thread):
    outcome = {}

    def judge():
        start = time.perf_counter()
        try:
            bounded.within_seconds(0.3, _loops_forever_and_swallows_exceptions)
        except AssertionError as error:
            outcome["reason"] = str(error)
        outcome["seconds"] = time.perf_counter() - start

    if in_a_thread:
        thread = threading.Thread(target=judge)
        thread.start()
        thread.join(10)
    else:
        judge()
    assert outcome["reason"].startswith("judging what your code returned took more than 0.3 seconds")
    assert outcome["seconds"] < 2


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    """The solution, graded by a course whose verdicts may take 0.1 ms each (honest ones take about a millisecond)."""
    course = layout.copy_course(tmp_path_factory.mktemp("impatient") / "course")
    with (course.root / "nbgrader_config.py").open("a") as config:
        config.write("\nc.GradedExecute.verdict_seconds = 0.0001\n")
    grading.release(course, PW3)
    source = nbformat.read(course.source_notebook(PW3), as_version=4)
    release = nbformat.read(course.release_notebook(PW3), as_version=4)
    folder = layout.submission_dir(course.submitted, "ada", PW3)
    folder.mkdir(parents=True)
    nbformat.write(answers.fill(release, answers.solution_answers(source)), folder / PW3.notebook)
    (result,) = grading.grade(course, PW3, jobs=1)
    nb = nbformat.read(layout.submission_dir(course.autograded, "ada", PW3) / PW3.notebook, as_version=4)
    return result, [check for cell_checks in checks.by_test_cell(nb).values() for check in cell_checks]


def test_the_grading_verdicts_run_within_their_time(impatient):
    result, found = impatient
    failed = [c for c in found if not c.passed]
    assert result.status == "graded" and result.score < 100 and failed
    assert {c.reason for c in failed} == {"judging what your code returned took more than 0.0001 seconds, so this "
                                          "check was stopped (is what your code returns unusually large?)"}
