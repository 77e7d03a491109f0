"""Tampering earns nothing and is reported; student code runs in a sandbox with no network, no view of the
course, no write access outside its own folder, and limited memory and CPU time (attacked one by one in
test_sandbox.py)."""

from conftest import autograded_notebook


def _printed(graded, student) -> str:
    nb = autograded_notebook(graded, student)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_replacing_torch_allclose_gains_nothing_and_is_reported(graded):
    tampered, honest = graded.results["tamper-allclose"], graded.results["demo-mistakes"]
    assert tampered.exercises == honest.exercises
    assert "tampering: replaced torch.allclose" in tampered.note


def test_a_fake_checks_class_earns_nothing_and_is_reported(graded):
    result = graded.results["tamper-checks"]
    assert result.score == 0 and "tampering: replaced Checks" in result.note


def test_tampering_while_the_checks_run_costs_the_exercise(graded):
    result = graded.results["tamper-inside"]
    assert result.exercises["self_attention"] == 0
    assert all(points == graded.results["demo-solution"].exercises[e] for e, points in result.exercises.items()
               if e != "self_attention"), "the other exercises are graded as usual"
    assert "tampering: replaced torch.allclose" in result.note


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
