"""Runs nbgrader's autograde over the staged hand-ins, with N workers on one machine, in the sandbox.

Each worker is a process that loads nbgrader and this course's nbgrader_config.py once, then grades one
hand-in at a time (nbgrader's own API, `NbGraderAPI.autograde`), so a batch pays nbgrader's start-up once
per worker, not once per student. Workers take the next hand-in as soon as they are free, so one slow
notebook doesn't hold up the others.

What makes parallel grading give the same results as sequential grading:
- every hand-in is graded by the same code, with the same configuration, in its own kernel;
- each worker's kernels talk over their own IPC sockets (a folder per worker, emptied for each kernel), so
  two kernels never share a socket; in the sandbox, they run as the worker's own uid (sandbox.worker_uid);
- the gradebook is written in short transactions (nbgrader opens it per step); SQLite serialises them,
  and waits for the lock rather than failing.

The terminal shows progress (tqdm): hand-ins done / total, elapsed time, ETA and the hand-ins being
graded. nbgrader's log goes to reports/<assignment>/autograde.log, one section per hand-in, in student order.

One hand-in cannot take the batch down: a worker that dies (killed, out of memory) is replaced (coursekit.workers),
the hand-in it was grading is graded again on a fresh worker, and if that one dies too, the hand-in is reported
failed with the reason (Outcome.reason), and the others are graded as usual.
"""

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import layout, sandbox, workers


class SandboxUnavailable(RuntimeError):
    pass


class ConfigError(RuntimeError):
    pass


def load_config(root: Path):
    """The course's nbgrader_config.py, loaded as nbgrader loads it. nbgrader itself only logs a broken
    configuration and goes on with its defaults (grading without the sandbox's settings, the output limits or
    the hidden-test stripping of feedback): this raises instead, saying why."""
    from traitlets.config.loader import PyFileConfigLoader

    try:
        return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    except Exception as error:
        raise ConfigError(f"{Path(root) / 'nbgrader_config.py'} cannot be loaded ({type(error).__name__}: {error}); "
                          "nbgrader would silently use its defaults instead, so nothing was run") from error


@dataclass(frozen=True)
class AutogradeOutcome:
    """What nbgrader said about one hand-in; if it could not grade it, why (`reason`, one line)."""
    student: str
    success: bool
    log: str
    seconds: float
    reason: str = ""


def default_jobs() -> int:
    """One worker per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def log_path(course: layout.Course, assignment: layout.Assignment) -> Path:
    return course.reports_of(assignment) / "autograde.log"


# Kernels run with one math thread each, unless the environment says otherwise: the notebook's tensors are tiny,
# and on this project's 2-core machine a kernel with PyTorch's default of one thread per core graded 2.3 times
# slower (124 s against 54 s for 6 hand-ins), and two such kernels side by side 2.8 times slower.
THREADS_PER_KERNEL = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def environment() -> dict[str, str]:
    """Offline, with this Python's tools on the PATH (nbgrader calls `alembic`), coursekit importable
    (nbgrader_config.py imports it, also from a copy of the course elsewhere), and one math thread per kernel."""
    env = {**THREADS_PER_KERNEL, **os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(layout.ROOT)}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _sandbox_environment(course: layout.Course, sandboxed: bool) -> dict[str, str]:
    """The environment that makes nbgrader find the sandbox's kernelspec (none without the sandbox)."""
    if not sandboxed:
        return {}
    why = sandbox.unavailable()
    if why:
        raise SandboxUnavailable(
            f"The grading sandbox is not available: {why}.\nStudent code would run with your permissions, "
            "network and files. Install bubblewrap (`make setup` does, as root), or grade without the sandbox "
            "on purpose: `make grade SANDBOX=off`.")
    return sandbox.install_kernel(course.root / "build", course.root)


# The worker processes' state: one nbgrader API each, and the assignment it grades, made by _start_worker.
_api = None
_assignment = None


def _start_worker(worker: int, root: str, assignment: str, env: dict[str, str], sandboxed: bool) -> None:
    """Loads the course's nbgrader configuration, with the assignment's staging folder as the submissions to
    grade, and (sandboxed) this worker's own kernel uid and IPC folder."""
    global _api, _assignment
    os.environ.update(env)
    os.chdir(root)
    sys.path.insert(0, str(layout.ROOT))
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    config = load_config(Path(root))
    if sandboxed:
        os.environ.update(sandbox.worker_environment(worker))
        config.merge(Config(sandbox.nbgrader_settings(Path(root) / "build", worker)))
    _assignment = layout.Assignment(assignment)
    config.CourseDirectory.submitted_directory = str(layout.Course(Path(root)).staging(_assignment).relative_to(root))
    _api = NbGraderAPI(config=config)


def _grade_one(student: str) -> AutogradeOutcome:
    start = time.perf_counter()
    result = _api.autograde(_assignment.name, student, force=True, create=True)
    log = result.get("log", "") + (result.get("error") or "")
    error = (result.get("error") or "").strip().splitlines()
    reason = "" if result["success"] else "nbgrader could not grade it" + (f" ({error[-1]})" if error else "")
    return AutogradeOutcome(student, bool(result["success"]), log, time.perf_counter() - start, reason)


def _outcome(student: str, result) -> AutogradeOutcome:
    """A worker's result for one hand-in, as an AutogradeOutcome."""
    if isinstance(result, workers.Lost):
        times = "twice" if result.deaths == 2 else "once" if result.deaths == 1 else f"{result.deaths} times"
        reason = f"grading worker died {times}: {result.how}"
    elif isinstance(result, workers.Raised):
        reason = f"grading worker failed: {result.error}"
    else:
        return result
    return AutogradeOutcome(student, False, f"[ERROR] {reason}", 0.0, reason)


def grade_hand_ins(students: list[str], jobs: int, start: Callable, start_args: tuple,
                   grade_one: Callable[[str], AutogradeOutcome]) -> dict[str, AutogradeOutcome]:
    """`grade_one(student)` for every student, `jobs` at a time in worker processes started with
    `start(worker, *start_args)`, with a progress bar: a hand-in whose worker dies is graded once more on a
    fresh worker, then reported failed."""
    jobs = max(1, min(jobs, len(students)))
    with tqdm(total=len(students), unit="hand-in", desc=f"autograde ({jobs} worker{'s' * (jobs > 1)})",
              file=sys.stderr) as bar:
        def show(finished, running):
            bar.set_postfix_str(", ".join(running))
            if finished is not None:
                bar.update(1)

        results = workers.run(students, grade_one, jobs, start, start_args, tries=2, on_change=show)
    return {student: _outcome(student, results[student]) for student in students}


def autograde(course: layout.Course, assignment: layout.Assignment, sandboxed: bool = True,
              jobs: int | None = None) -> dict[str, AutogradeOutcome]:
    """nbgrader autograde on every hand-in of `assignment` staged in build/intake/<assignment>/, `jobs` at a time
    (default: one per core)."""
    env = _sandbox_environment(course, sandboxed)
    load_config(course.root)
    staging = course.staging(assignment)
    students = sorted(p.name for p in staging.iterdir() if p.is_dir()) if staging.is_dir() else []
    if not students:
        return {}
    outcomes = grade_hand_ins(students, jobs or default_jobs(), _start_worker,
                              (str(course.root), assignment.name, {**environment(), **env}, sandboxed), _grade_one)
    write_log(course, assignment, outcomes)
    return outcomes


def _header(outcome: AutogradeOutcome) -> str:
    verdict = "graded" if outcome.success else f"FAILED ({outcome.reason})" if outcome.reason else "FAILED"
    return f"===== {outcome.student}: {verdict} in {outcome.seconds:.1f} s ====="


def write_log(course: layout.Course, assignment: layout.Assignment, outcomes: dict[str, AutogradeOutcome]) -> Path:
    """reports/<assignment>/autograde.log: nbgrader's log for every hand-in, in student order, after a line that says
    whether it was graded (and if not, why)."""
    path = log_path(course, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as log:
        for student in sorted(outcomes):
            outcome = outcomes[student]
            log.write(_header(outcome) + "\n")
            log.write(outcome.log.rstrip("\n") + "\n\n")
    return path
