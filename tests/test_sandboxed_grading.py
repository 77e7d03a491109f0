"""Student code runs in a sandbox while it is graded, and a correct notebook is graded as usual in it (each defence
is attacked one by one in test_sandbox.py; forged grades in test_forgery.py)."""

from conftest import GRADER_SECRET, GRADER_SECRET_VARIABLE, autograded_notebook
from coursekit import layout
from assignments import PW2


def _printed(graded, student) -> str:
    nb = autograded_notebook(graded, student)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_student_code_is_sandboxed_while_graded(graded):
    printed = _printed(graded, "sandbox-probe")
    assert "probe network: [Errno 101] Network is unreachable" in printed
    assert "probe gradebook visible: False False" in printed
    assert "probe students visible: ['sandbox-probe']" in printed
    assert "probe write outside: [Errno 30] Read-only file system" in printed
    assert "probe 6 GiB: MemoryError" in printed
    assert not (graded.course.root / "written-by-a-student.txt").exists()
    assert "suspicious code: reads the gradebook, uses the network" in graded.results["sandbox-probe"].note
    assert graded.results["sandbox-probe"].score == 100, "the sandbox doesn't get in the way of a correct notebook"


def test_no_secret_of_the_grader_reaches_the_students_notebook_or_feedback_page(graded):
    """The grader's environment and a file of its outside the course: the probe prints what it can see of both."""
    printed = _printed(graded, "sandbox-probe")
    assert "probe environment:" in printed and GRADER_SECRET_VARIABLE not in printed
    assert "probe secret file: [Errno 2] No such file or directory" in printed
    page = layout.submission_dir(graded.course.feedback, "sandbox-probe", PW2) / "pw2_transformers.html"
    assert page.is_file() and GRADER_SECRET not in page.read_text(encoding="utf-8")
    assert GRADER_SECRET not in printed
