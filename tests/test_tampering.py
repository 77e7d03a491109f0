"""Tampering earns nothing and is reported; student code runs in a sandbox with no network, no view of the
course, no write access outside its own folder, and limited memory and CPU time."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import autograded_notebook
from coursekit import sandbox


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


def _run_sandboxed(tmp_path, code, **limits):
    root = tmp_path / "course"
    work = root / "autograded" / "ada" / "pw2_transformers"
    work.mkdir(parents=True)
    (root / "gradebook.db").write_text("hidden tests")
    command = sandbox.command([sys.executable, "-c", code], work, root, Path(sys.prefix), [], **limits)
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_student_code_cannot_see_the_gradebooks_url_or_local_database_sockets(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADEBOOK_URL", "postgresql://grader:secret@localhost/transformers")
    run = _run_sandboxed(tmp_path, "import os; print(os.environ.get('GRADEBOOK_URL'), "
                                   "[os.listdir(d) for d in ('/run/postgresql',) if os.path.isdir(d)])")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() in ("None []", "None [[]]")


def test_the_sandbox_is_available_here():
    assert sandbox.unavailable() == "", "install bubblewrap: apt-get install bubblewrap"


def test_the_sandbox_limits_cpu_time(tmp_path):
    run = _run_sandboxed(tmp_path, "while True: pass", cpu_seconds=1)
    assert run.returncode != 0, "a busy loop must be stopped by the CPU-time limit"


def test_the_sandbox_limits_memory(tmp_path):
    run = _run_sandboxed(tmp_path, "bytearray(2 * 2**30)", memory_bytes=2**30)
    assert run.returncode != 0 and "MemoryError" in run.stderr


@pytest.mark.parametrize("path", ["../../../gradebook.db", "/etc/hostname"])
def test_the_sandbox_hides_the_course_but_not_the_system(tmp_path, path):
    run = _run_sandboxed(tmp_path, f"import os; print(os.path.exists({path!r}))")
    assert run.stdout.strip() == ("False" if "gradebook" in path else "True")


def test_grading_refuses_to_run_unsandboxed_when_the_sandbox_is_missing(monkeypatch, tmp_path):
    from coursekit import autograde, grading, layout
    monkeypatch.setattr(sandbox, "unavailable", lambda: "`bwrap` is not installed")
    with pytest.raises(grading.SandboxUnavailable, match="bwrap"):
        autograde.autograde(layout.Course(tmp_path))
