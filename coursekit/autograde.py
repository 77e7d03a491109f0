"""Runs nbgrader's autograde over the staged hand-ins, with N workers on one machine, in the sandbox.

Each worker is a process that loads nbgrader and this course's nbgrader_config.py once, then grades one
hand-in at a time (nbgrader's own API, `NbGraderAPI.autograde`), so a batch pays nbgrader's start-up once
per worker, not once per student. Workers take the next hand-in as soon as they are free, so one slow
notebook doesn't hold up the others.

What makes parallel grading give the same results as sequential grading:
- every hand-in is graded by the same code, with the same configuration, in its own kernel;
- each worker's kernels talk over their own IPC sockets (a prefix per worker), so two kernels never
  share a socket;
- the gradebook is written in short transactions (nbgrader opens it per step); SQLite serialises them,
  and waits for the lock rather than failing.

The terminal shows progress (tqdm): hand-ins done / total, elapsed time, ETA and the hand-ins being
graded. nbgrader's log goes to reports/autograde.log, one section per hand-in, in student order.
"""

import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from . import layout, sandbox


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
class Outcome:
    """What nbgrader said about one hand-in."""
    student: str
    success: bool
    log: str
    seconds: float


def default_jobs() -> int:
    """One worker per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def log_path(course: layout.Course) -> Path:
    return course.reports / "autograde.log"


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


def _sandbox_settings(course: layout.Course, sandboxed: bool) -> tuple[dict[str, str], dict[str, dict]]:
    """The environment and the nbgrader settings that run the kernels in the sandbox (none without it)."""
    if not sandboxed:
        return {}, {}
    why = sandbox.unavailable()
    if why:
        raise SandboxUnavailable(
            f"The grading sandbox is not available: {why}.\nStudent code would run with your permissions, "
            "network and files. Install bubblewrap (`make setup` does, as root), or grade without the sandbox "
            "on purpose: `make grade SANDBOX=off`.")
    build = course.root / "build"
    return sandbox.install_kernel(build, course.root), sandbox.nbgrader_settings(build)


# The worker processes' state: one nbgrader API each, made by _start_worker.
_api = None


def _start_worker(root: str, env: dict[str, str], settings: dict[str, dict]) -> None:
    """Loads the course's nbgrader configuration, with the staging folder as the submissions to grade, and
    this worker's own IPC socket prefix."""
    global _api
    os.environ.update(env)
    os.chdir(root)
    sys.path.insert(0, str(layout.ROOT))
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    config = load_config(Path(root))
    config.merge(Config(settings))
    config.CourseDirectory.submitted_directory = str(layout.Course(Path(root)).staging.relative_to(root))
    if "AsyncKernelManager" in settings:
        config.AsyncKernelManager.ip = f"{settings['AsyncKernelManager']['ip']}-{os.getpid()}"
    _api = NbGraderAPI(config=config)


def _grade_one(student: str) -> Outcome:
    start = time.perf_counter()
    result = _api.autograde(layout.ASSIGNMENT, student, force=True, create=True)
    log = result.get("log", "") + (result.get("error") or "")
    return Outcome(student, bool(result["success"]), log, time.perf_counter() - start)


def autograde(course: layout.Course, sandboxed: bool = True, jobs: int | None = None) -> dict[str, Outcome]:
    """nbgrader autograde on every hand-in staged in build/intake/, `jobs` at a time (default: one per core)."""
    env, settings = _sandbox_settings(course, sandboxed)
    load_config(course.root)
    students = sorted(p.name for p in course.staging.iterdir() if p.is_dir()) if course.staging.is_dir() else []
    if not students:
        return {}
    jobs = max(1, min(jobs or default_jobs(), len(students)))
    outcomes: dict[str, Outcome] = {}
    # spawn: fresh workers that import only what they need, whatever the parent process holds (torch, threads)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_start_worker,
                             initargs=(str(course.root), {**environment(), **env}, settings)) as pool, \
            tqdm(total=len(students), unit="hand-in", desc=f"autograde ({jobs} worker{'s' * (jobs > 1)})",
                 file=sys.stderr) as bar:
        pending = {pool.submit(_grade_one, student): student for student in students}
        while pending:
            running = ", ".join([s for f, s in pending.items() if f.running()][:jobs])
            if running != bar.postfix:
                bar.set_postfix_str(running)
            done, _ = wait(pending, timeout=1, return_when=FIRST_COMPLETED)
            for future in done:
                student = pending.pop(future)
                try:
                    outcomes[student] = future.result()
                except Exception as error:  # a worker died: say so, and grade the others
                    outcomes[student] = Outcome(student, False, f"[ERROR] the grading worker failed: {error!r}", 0.0)
                bar.update(1)
    write_log(course, outcomes)
    return outcomes


def write_log(course: layout.Course, outcomes: dict[str, Outcome]) -> Path:
    """reports/autograde.log: nbgrader's log for every hand-in, in student order."""
    path = log_path(course)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as log:
        for student in sorted(outcomes):
            outcome = outcomes[student]
            log.write(f"===== {student}: {'graded' if outcome.success else 'FAILED'} in {outcome.seconds:.1f} s =====\n")
            log.write(outcome.log.rstrip("\n") + "\n\n")
    return path
