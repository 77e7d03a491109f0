"""Runs nbgrader's autograde over the staged hand-ins, with N workers on one machine, in the sandbox.

Each worker is a process that loads nbgrader and this course's nbgrader_config.py once, then grades one
hand-in at a time (nbgrader's own API, `NbGraderAPI.autograde`), so a batch pays nbgrader's start-up once
per worker, not once per student. Workers take the next hand-in as soon as they are free, so one slow
notebook doesn't hold up the others.

Every hand-in is graded by one function, `grade_one`, on this machine's pool as on a Dask worker (coursekit/cluster.py):
the staged hand-in's bytes go in, the worker writes them into its own folder (build/grading/<assignment>/worker-<n>/),
nbgrader autogrades them there (writing the grades into the gradebook), and the autograded notebook (and nbgrader's
timestamp.txt), the scores and the note (time-outs) come back; the coordinator stores them in autograded/ (`store`).
The sandboxed kernel never sees that folder: it works in a scratch copy of it (coursekit/sandbox.py), so what comes
back is what nbgrader wrote, read without following links and within a budget (coursekit/boundary.py).

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
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm import tqdm

from . import boundary, demo_cells, kernel_failures, layout, notebook_checks, sandbox, warm_kernels, workers


class SandboxUnavailable(RuntimeError):
    pass


class ConfigError(RuntimeError):
    pass


class ClusterRefused(RuntimeError):
    """Grading on a cluster cannot go ahead (the gradebook, the scheduler's address): nothing was graded."""


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
    """What nbgrader said about one hand-in; if it could not grade it, why (`reason`, one line); what went wrong
    while it ran (`note`: time-outs, exercises lost to kernel failures); the points of its graded cells as nbgrader
    wrote them (`scores`)."""
    student: str
    success: bool
    log: str
    seconds: float
    reason: str = ""
    note: str = ""
    scores: dict = field(default_factory=dict, compare=False)


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


# A worker process's state, made by _start_worker: one nbgrader API, the assignment it grades, and its own folder
# build/grading/<assignment>/worker-<n>/ where each hand-in is written (in/) and autograded (out/).
_api = None
_assignment = None
_work: Path | None = None
_root: Path | None = None
_scratch: Path | None = None  # the folder this worker's sandboxed kernels work in
_ipc: Path | None = None      # the folder of their sockets
_zygote = None                # the process that forks them warm (coursekit/warm_kernels.py), if any


def _start_worker(worker: int, root: str, assignment: str, env: dict[str, str], sandboxed: bool) -> None:
    """Loads the course's nbgrader configuration, with this worker's own folders as the submissions to grade and
    the autograded notebooks, and (sandboxed) this worker's own kernel uid and IPC folder."""
    global _api, _assignment, _work, _root, _scratch, _ipc, _zygote
    os.environ.update(env)
    os.chdir(root)
    sys.path.insert(0, str(layout.ROOT))
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    config = load_config(Path(root))
    _root, _assignment = Path(root), layout.Assignment(assignment)
    if sandboxed:
        os.environ.update(sandbox.worker_environment(worker))
        config.merge(Config(sandbox.nbgrader_settings(Path(root) / "build", worker)))
        if warm_kernels_wanted() and sandbox.worker_uid(worker) is not None:
            os.environ[sandbox.WARM_VARIABLE] = _start_zygote(worker)
    _work = _root / "build" / "grading" / assignment / f"worker-{worker}"
    shutil.rmtree(_work, ignore_errors=True)
    _scratch = sandbox.scratch_folder(_root / "build", worker) if sandboxed else None
    _ipc = sandbox.ipc_folder(_root / "build", worker) if sandboxed else None
    config.CourseDirectory.submitted_directory = str((_work / "in").relative_to(_root))
    config.CourseDirectory.autograded_directory = str((_work / "out").relative_to(_root))
    _api = NbGraderAPI(config=config)


# Kernels are forked warm from a zygote per worker (coursekit/warm_kernels.py) when grading runs as root;
# COURSEKIT_WARM_KERNELS=0 in the environment starts every kernel cold.
WARM_SWITCH = "COURSEKIT_WARM_KERNELS"


def warm_kernels_wanted() -> bool:
    return os.environ.get(WARM_SWITCH, "1") != "0"


def warm_modules(course: layout.Course, assignment: layout.Assignment) -> list[str]:
    """What a zygote imports for `assignment`: the modules its release notebook's cells import, but its demo cells'
    (grading skips them; see coursekit/demo_cells.py)."""
    try:
        cells = nbformat.read(course.release_notebook(assignment), as_version=4).cells
    except (OSError, ValueError):
        return []
    return warm_kernels.modules_of([c for c in cells if demo_cells.DEMO not in demo_cells.tags(c)])


def _start_zygote(worker: int) -> str:
    """Starts this worker's zygote (stopped when the worker ends); returns its socket, or "" when it did not start."""
    global _zygote
    import atexit

    address = warm_kernels.socket_path(_root / "build", worker)
    _zygote = warm_kernels.start(address, warm_modules(layout.Course(_root), _assignment),
                                 sandbox.kernel_environment(os.environ))
    atexit.register(warm_kernels.stop, _zygote)
    return address if _zygote is not None else ""


# What a staged hand-in may weigh (intake stages a notebook of at most intake.MAX_MB and a timestamp.txt), and what
# comes back of an autograded one: its notebook, whose outputs nbgrader and LimitOutputSize cap, and timestamp.txt.
STAGED_BYTES = 64 * boundary.MiB
AUTOGRADED_BYTES = 64 * boundary.MiB
TIMESTAMP = "timestamp.txt"


def staged_hand_in(course: layout.Course, assignment: layout.Assignment, student: str) -> dict:
    """What a worker grades: the student's staged folder (build/intake/<assignment>/<student>/<assignment>/), as
    {"student": id, "files": {path in the folder: bytes}} (plain data: it may travel to another machine)."""
    try:
        files = boundary.read_tree(course.staging(assignment), student, assignment.name, max_bytes=STAGED_BYTES).files
    except (boundary.Refused, FileNotFoundError):
        files = {}
    return {"student": student, "files": files}


def autograded_files(folder: Path, student: str) -> tuple[dict[str, bytes], str]:
    """What comes back of an autograded hand-in in `folder` (the worker's out/): its notebook and nbgrader's
    timestamp.txt, read without following links, within AUTOGRADED_BYTES; and why not, when its notebook can't be."""
    names = [_assignment.notebook, TIMESTAMP]
    try:
        tree = boundary.read_tree(folder, student, _assignment.name, names=names, max_bytes=AUTOGRADED_BYTES)
    except (boundary.Refused, FileNotFoundError) as error:
        return {}, f"its autograded folder cannot be read ({error})"
    if _assignment.notebook not in tree.files:
        return {}, "its autograded notebook cannot be read (" + tree.refused.get(_assignment.notebook, "missing") + ")"
    return tree.files, ""


def grade_one(hand_in: dict) -> dict:
    """Grades one staged hand-in in this worker (started by _start_worker), the one way every hand-in is graded,
    by the local pool as on a Dask worker: its files go in, nbgrader autogrades them (writing the scores into the
    gradebook), and what comes back is plain data: {"student", "success", "log", "seconds", "reason", "note" (what
    went wrong while it ran: time-outs), "scores" (grade cell: points, as nbgrader wrote them), "files" (the
    autograded folder: path: bytes; none when nbgrader could not grade it)}."""
    start = time.perf_counter()
    memory_before = worker_memory(reset_peak=True)
    student = hand_in["student"]
    _clean()
    boundary.write_tree(layout.submission_dir(_work / "in", student, _assignment), hand_in["files"])
    try:
        result = _api.autograde(_assignment.name, student, force=True, create=True)
        log = result.get("log", "") + (result.get("error") or "") + memory_line(memory_before, worker_memory())
        error = (result.get("error") or "").strip().splitlines()
        success = bool(result["success"])
        reason = "" if success else "nbgrader could not grade it" + (f" ({error[-1]})" if error else "")
        files, unread = autograded_files(_work / "out", student) if success else ({}, "")
        if unread:
            success, reason = False, unread
        note, scores = "", {}
        if _assignment.notebook in files:
            nb = nbformat.reads(files[_assignment.notebook].decode("utf-8"), as_version=4)
            note = "; ".join(run_problems(nb))
            scores = _gradebook_scores(student)
    finally:
        _clean()
    return {"student": student, "success": success, "log": log, "seconds": time.perf_counter() - start,
            "reason": reason, "note": note, "scores": scores, "files": files}


def _clean() -> None:
    """Empties this worker's folders: nbgrader's input and output, and its kernels' scratch and IPC folders (which the
    kernel could write: removed without following anything in them)."""
    for folder in (_work / "in", _work / "out"):
        shutil.rmtree(folder, ignore_errors=True)
    for folder in (_scratch, _ipc):
        if folder is not None:
            sandbox.remove_kernel_folder(folder)


def worker_memory(reset_peak: bool = False) -> dict[str, int]:
    """This process's resident memory now and at its peak (bytes; Linux's /proc/self/status, else {}). `reset_peak`
    starts the peak again from now (Linux's clear_refs), so that it is one hand-in's."""
    try:
        if reset_peak:
            Path("/proc/self/clear_refs").write_text("5")
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return {name: int(fields[key].split()[0]) * 1024 for name, key in (("rss", "VmRSS"), ("peak", "VmHWM"))}
    except (OSError, KeyError, ValueError):
        return {}


MEMORY_LINE = ("[coursekit] grading worker memory: {before:.0f} MB before this hand-in, {peak:.0f} MB at most, "
               "{after:.0f} MB after\n")


def memory_line(before: dict[str, int], after: dict[str, int]) -> str:
    """The log's line on the grading worker's memory while it graded one hand-in (MB)."""
    if not before or not after:
        return ""
    return MEMORY_LINE.format(before=before["rss"] / 2**20, peak=after["peak"] / 2**20, after=after["rss"] / 2**20)


def _gradebook_scores(student: str) -> dict[str, float]:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(layout.gradebook_url(_root)) as gb:
        try:
            notebook = gb.find_submission_notebook(_assignment.notebook_id, _assignment.name, student)
        except MissingEntry:
            return {}
        return {g.name: g.score or 0.0 for g in notebook.grades}


def run_problems(nb: nbformat.NotebookNode) -> list[str]:
    """What went wrong while a student's notebook ran: the cells that ran out of time (nbclient's own time-out,
    or the grader's record that a check cell ran out of time), and the exercises lost to kernel failures."""
    timeouts, last = [], "the start"
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        last = grade_id or last
        if cell.cell_type != "code":
            continue
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        if any(o.output_type == "error" and "Timeout" in o.get("ename", "") for o in cell.outputs) \
                or notebook_checks.CELL_TIMED_OUT in printed:
            timeouts.append(grade_id or f"a cell of the student's after {last}")
    lost = kernel_failures.lost_exercises(nb)
    return (["ran out of time in " + ", ".join(timeouts)] if timeouts else []) + \
        ([kernel_failures.note(lost)] if lost else [])


def store(course: layout.Course, assignment: layout.Assignment, student: str, files: dict[str, bytes]) -> None:
    """The coordinator's side of a graded hand-in: autograded/<student>/<assignment>/ made of the files the worker
    sent back (none: nbgrader could not grade it, and the folder goes, as nbgrader removes what it failed to grade).
    Writing the same files twice gives the same folder (a hand-in graded twice is stored twice, harmlessly)."""
    target = layout.submission_dir(course.autograded, student, assignment)
    if target.exists():
        shutil.rmtree(target)
    if files:
        target.mkdir(parents=True)
        boundary.write_tree(target, files)


def outcome(student: str, result) -> AutogradeOutcome:
    """A worker's result for one hand-in (grade_one's, or Raised or Lost), as an AutogradeOutcome."""
    if isinstance(result, workers.Lost):
        times = "twice" if result.deaths == 2 else "once" if result.deaths == 1 else f"{result.deaths} times"
        reason = f"grading worker died {times}: {result.how}"
    elif isinstance(result, workers.Raised):
        reason = f"grading worker failed: {result.error}"
    elif isinstance(result, dict):
        return AutogradeOutcome(student, result["success"], result["log"], result["seconds"], result["reason"],
                                result["note"], result["scores"])
    else:
        return result
    return AutogradeOutcome(student, False, f"[ERROR] {reason}", 0.0, reason)


def progress_bar(total: int, workers_: str):
    """The progress bar of a batch: hand-ins done / total, elapsed time, ETA, and (postfix) the ones being graded."""
    return tqdm(total=total, unit="hand-in", desc=f"autograde ({workers_})", file=sys.stderr)


def grade_hand_ins(students: list[str], jobs: int, start: Callable, start_args: tuple,
                   grade: Callable, on_result: Callable | None = None) -> dict[str, AutogradeOutcome]:
    """`grade(student)` for every student, `jobs` at a time in worker processes started with
    `start(worker, *start_args)`, with a progress bar: a hand-in whose worker dies is graded once more on a fresh
    worker, then reported failed. `on_result(student, result)` gets each worker's result as soon as it comes."""
    jobs = max(1, min(jobs, len(students)))
    with progress_bar(len(students), f"{jobs} worker{'s' * (jobs > 1)}") as bar:
        def show(finished, running):
            bar.set_postfix_str(", ".join(running))
            if finished is not None:
                bar.update(1)

        results = workers.run(students, grade, jobs, start, start_args, tries=2, on_change=show, on_result=on_result)
    return {student: outcome(student, results[student]) for student in students}


@dataclass(frozen=True)
class _GradeStaged:
    """The local pool's task: grade_one of a student's staged hand-in, read by the worker (picklable)."""
    root: str
    assignment: str

    def __call__(self, student: str) -> dict:
        return grade_one(staged_hand_in(layout.Course(Path(self.root)), layout.Assignment(self.assignment), student))


def autograde(course: layout.Course, assignment: layout.Assignment, sandboxed: bool = True,
              jobs: int | None = None, students: list[str] | None = None,
              on_outcome: Callable | None = None) -> dict[str, AutogradeOutcome]:
    """nbgrader autograde on the hand-ins of `assignment` staged in build/intake/<assignment>/ (`students`, default
    every one), `jobs` at a time (default: one per core), each hand-in graded by grade_one in a worker and stored in
    autograded/ here. `on_outcome(outcome)` is called as soon as each hand-in is stored (before the batch ends)."""
    env = _sandbox_environment(course, sandboxed)
    load_config(course.root)
    staging = course.staging(assignment)
    if students is None:
        students = sorted(p.name for p in staging.iterdir() if p.is_dir()) if staging.is_dir() else []
    if not students:
        return {}

    def stored(student, result):
        done = outcome(student, result)
        store(course, assignment, student, result.get("files", {}) if isinstance(result, dict) else {})
        if on_outcome:
            on_outcome(done)

    return grade_hand_ins(students, jobs or default_jobs(), _start_worker,
                          (str(course.root), assignment.name, {**environment(), **env}, sandboxed),
                          _GradeStaged(str(course.root), assignment.name), on_result=stored)


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
