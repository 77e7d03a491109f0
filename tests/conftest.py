"""Shared fixtures: a throwaway copy of the course, released, with the demo submissions graded once.

Grading runs in a temporary course directory, so the tests never touch the repository's gradebook,
submissions or reports.
"""

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch

import attacks
import handins
from coursekit import answers, export, grading, layout, results as scores, samples, scoring
from assignments import PW2

os.environ["HF_HUB_OFFLINE"] = "1"  # the Hugging Face Hub is never needed, and unreachable here
# The tests call students' code on tiny tensors in this process; with one thread per core, on a 2-core machine busy
# grading, every small op waits for a busy core: 3x slower (the kernels that grade hand-ins get one thread anyway).
torch.set_num_threads(1)

# The course copies the tests grade stop a cell after 30 s instead of the course's 60 s: the hand-ins that loop
# forever or block (runaways, crashes) cost half the waiting. An honest cell takes under 2 s here.
TEST_CELL_TIMEOUT = 30
_copy_course = layout.copy_course


def _copy_course_for_tests(destination: Path, course: layout.Course = layout.COURSE) -> layout.Course:
    copied = _copy_course(destination, course)
    if f"c.Execute.timeout = {TEST_CELL_TIMEOUT}\n" in (copied.root / "nbgrader_config.py").read_text(encoding="utf-8"):
        return copied  # a copy of a test course
    with (copied.root / "nbgrader_config.py").open("a", encoding="utf-8") as config:
        config.write(f"\n# tests/conftest.py: runaway cells cost less waiting\nc.Execute.timeout = {TEST_CELL_TIMEOUT}\n")
    return copied


layout.copy_course = _copy_course_for_tests


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the hash of its bytes (and so its content and name)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def course(tmp_path_factory) -> layout.Course:
    """A copy of the course directory in which release/ and solutions/ were generated again from source/, for every
    assignment."""
    course = layout.copy_course(tmp_path_factory.mktemp("course"))
    for assignment in layout.assignments():
        grading.release(course, assignment)
        grading.nbgrader(course, "generate_solution", assignment.name, "--force")
    return course


@dataclass
class GradedBatch:
    course: layout.Course
    results: dict[str, scores.Result]
    submitted_before: dict[str, str]


# A secret of the grader's, in its environment and in a file outside the course: student code must never see them.
GRADER_SECRET = "grader-secret-4b1d"
GRADER_SECRET_VARIABLE = "COURSEKIT_TEST_GRADER_SECRET"
GRADER_SECRET_FILE = "grader-secret.txt"  # next to the course directory

# An extra cell that tries what the sandbox forbids, and prints what happened.
SANDBOX_PROBE = """import os, socket
print("probe environment:", dict(os.environ))
try:
    print("probe secret file:", open(SECRET_FILE).read())
except OSError as error:
    print("probe secret file:", error)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3)
    print("probe network: reachable")
except OSError as error:
    print("probe network:", error)
print("probe gradebook visible:", os.path.exists("../../../gradebook.db"), os.path.exists("../../../source"))
print("probe students visible:", sorted(os.listdir("../..")))
try:
    open("../../../written-by-a-student.txt", "w").write("x")
    print("probe write outside: done")
except OSError as error:
    print("probe write outside:", error)
try:
    hog = bytearray(6 * 2**30)
    print("probe 6 GiB: allocated")
except MemoryError:
    print("probe 6 GiB: MemoryError")
"""

def grader_only_names(source: nbformat.NotebookNode) -> list[str]:
    """The names the grader-only cells define: the references and verdicts that must never reach the kernel."""
    code = "\n".join(c.source for c in source.cells if scoring.is_grader_only(c))
    return sorted({a or b for a, b in re.findall(r"^(?:def|class)\s+(\w+)|^(\w+)\s*=", code, re.M)})


def attack_handins(source: nbformat.NotebookNode, honest: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """Honest work with mistakes (demo-mistakes' answers), each with one attack added (see attacks.py)."""
    names = grader_only_names(source)
    search = f"GRADER_NAMES = {names!r}\n" + attacks.GC_SEARCH_ANSWER
    after_helpers = {
        "forge-suppressed-display": attacks.SUPPRESS_DISPLAY,
        "forge-numbers-as-text": attacks.NUMBERS_AS_TEXT,
        "forge-fake-checks": attacks.FAKE_CHECKS,
        "forge-patched-engine": attacks.PATCHED_ENGINE,
        "forge-profiler-and-thread": attacks.PROFILER_AND_THREAD,
        "forge-rewrite-check-cells": attacks.REWRITE_CHECK_CELLS,
        "forge-append-full-marks": attacks.APPEND_FULL_MARKS,
        "forge-probe-data": attacks.FORGED_PROBE_DATA,
    }
    made = {student: handins.inserted_after(honest, "grading_helpers", code) for student, code in after_helpers.items()}
    made["forge-lying-tensor"] = handins.edited(honest, "self_attention", attacks.LYING_TENSOR_ANSWER)
    made["leak-in-reason"] = handins.edited(honest, "self_attention", attacks.LEAK_IN_REASON_ANSWER)
    made["forge-gc-search"] = handins.inserted_after(handins.edited(honest, "lm_loss", search), "test_decode",
                                                     attacks.GC_SEARCH_REPORT)
    made["leak-history"] = handins.inserted_after(honest, "test_decode", attacks.PRINT_HISTORY)
    made["leak-captured-cells"] = handins.inserted_after(
        handins.inserted_after(honest, "grading_helpers", attacks.CAPTURE_CELLS), "test_decode", attacks.PRINT_CAPTURED)
    return made


def write_handins(course: layout.Course) -> None:
    """Real-world hand-ins (see handins.py), each a damaged copy of the solution or of the release."""
    secret_file = course.root.parent / GRADER_SECRET_FILE
    secret_file.write_text(GRADER_SECRET)
    source = nbformat.read(course.source_notebook(PW2), as_version=4)
    release = nbformat.read(course.release_notebook(PW2), as_version=4)
    solution_answers = answers.solution_answers(source)
    solution = answers.fill(release, solution_answers)
    helper_answer = "def self_attention(S, W_Q, W_K, W_V):\n    return my_attention(S @ W_Q, S @ W_K, S @ W_V)\n"
    texts = {
        "colab-saved": handins.colab_saved(solution),
        "colab-old-format": handins.colab_saved_old_format(solution),
        "metadata-lost": handins.metadata_lost(solution),
        "duplicated-cells": handins.duplicated(solution, "test_Block", "lm_loss", "test_lm_loss"),
        "deleted-tests": handins.deleted(solution, "test_Block", "test_decode", "grading_helpers"),
        "reordered": handins.moved_to_end(solution, "FeedForward", "test_FeedForward", "Block"),
        "edited-tests": handins.edited(solution, "test_lm_loss", "checks = Checks('lm_loss', 15)\n15"),
        "extra-cells": handins.inserted_after(handins.edited(solution, "self_attention", helper_answer), "imports",
                                              "def my_attention(Q, K, V):\n"
                                              "    return F.scaled_dot_product_attention(Q, K, V)\n"),
        "skip-tagged-release": handins.tagged(release, "skip-execution"),
        "sandbox-probe": handins.inserted_after(solution, "imports", f"SECRET_FILE = {str(secret_file)!r}\n" + SANDBOX_PROBE),
        **attack_handins(source, answers.fill(release, {**solution_answers, **samples.mistakes(PW2)})),
        "runaway-loop-in-answer": handins.edited(solution, "self_attention",
                                                 "def self_attention(S, W_Q, W_K, W_V):\n    while True:\n        pass\n"),
        "runaway-loop-in-cell": handins.inserted_after(solution, "FeedForward", "while True:\n    pass\n"),
        "runaway-output": handins.inserted_after(solution, "FeedForward", "print('x' * 50_000_000)\n"),
        "runaway-memory": handins.inserted_after(solution, "FeedForward", "hog = torch.empty(10**10)\n"),
        "runaway-many-outputs": handins.inserted_after(solution, "FeedForward", "from IPython.display import display\n"
                                                       "for _ in range(6000):\n    display('x' * 5000)\n"),
    }
    for student, nb in texts.items():
        folder = layout.submission_dir(course.submitted, student, PW2)
        folder.mkdir(parents=True)
        name = "Copy of pw2_transformers.ipynb" if student.startswith("colab") else PW2.notebook
        (folder / name).write_text(nb if isinstance(nb, str) else nbformat.writes(nb), encoding="utf-8")


# The batch is graded in parallel, also on a machine with one core: test_parallel.py compares it with sequential grading.
GRADING_JOBS = 2


@pytest.fixture(scope="session")
def graded(course) -> GradedBatch:
    """The demo submissions and the real-world hand-ins, graded once with the same command as `make grade`
    (two workers), then feedback and export."""
    samples.write(course, PW2)
    write_handins(course)
    before = tree_digest(course.submitted)
    os.environ[GRADER_SECRET_VARIABLE] = GRADER_SECRET
    try:
        found = grading.grade(course, PW2, jobs=GRADING_JOBS)
    finally:
        del os.environ[GRADER_SECRET_VARIABLE]
    scores.write_summary(course, PW2, found, sandboxed=True)
    grading.feedback(course, PW2)
    export.write_grades(course, [PW2], export.rows(course, [PW2]))
    return GradedBatch(course, {r.student: r for r in found}, before)


@pytest.fixture(scope="session")
def source_nb() -> nbformat.NotebookNode:
    return nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)


@pytest.fixture(scope="session")
def release_nb() -> nbformat.NotebookNode:
    return nbformat.read(layout.COURSE.release_notebook(PW2), as_version=4)


def autograded_notebook(batch: GradedBatch, student: str) -> nbformat.NotebookNode:
    return nbformat.read(layout.submission_dir(batch.course.autograded, student, PW2) / PW2.notebook, as_version=4)
