"""Student code runs in a sandbox while it is graded, and a correct notebook is graded as usual in it (each defence
is attacked one by one in test_sandbox.py; forged grades in test_forgery.py)."""

from conftest import autograded_notebook


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
