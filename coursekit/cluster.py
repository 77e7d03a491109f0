"""Grading on a Dask cluster (dask.distributed): `make grade CLUSTER=tcp://scheduler:8786`, or $DASK_SCHEDULER_ADDRESS.

A task is the grading of one hand-in, by the same function as on this machine (ag.grade_one): the staged
notebook's bytes go to a worker, which grades them in its own copy of the course, in the same sandbox, and sends
back the autograded folder's bytes, the scores and the note; this machine (the coordinator) writes autograded/ and
the reports, so workers need no shared filesystem. The workers write the grades into the gradebook they share
(PostgreSQL: with SQLite, grading on a cluster is refused).

- Workers. A worker grades in a process of its own (workers.Resident: nbgrader loaded once, a kernel per hand-in,
  one math thread per kernel), so a crash or an out-of-memory kills that process, never the Dask worker. Its
  course is the folder $COURSEKIT_COURSE_ROOT, else the checkout its coursekit comes from (`PYTHONPATH`). Start
  workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (a worker with a nanny may not start processes otherwise).
- Version check. Every task carries the hash of the coordinator's course for the assignment (instructor and release
  notebooks, nbgrader_config.py, coursekit's code) and of its gradebook's URL: a worker whose own differ refuses
  the hand-in (CourseMismatch, with both hashes), and it is sent to the other workers. So no hand-in is graded
  with other tests. A first check over every worker (Client.run) names the mismatched ones before grading.
- Faults. Tasks have keys ("grade", batch, student), sent with Client.map, and the scheduler is set to one task per
  worker thread (worker-saturation 1.0) and allowed-failures 1: a worker that dies costs only the hand-in it was
  grading, which is graded again on another worker; a hand-in that takes two workers down is reported failed.
  Dask may run a task twice (a result lost with its worker): storing it is idempotent, and each hand-in's outcome
  is kept once, when its result first arrives.
"""

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from . import autograde as ag, incremental, layout, workers
from .autograde import ClusterRefused

COURSE_ROOT = "COURSEKIT_COURSE_ROOT"


class CourseMismatch(RuntimeError):
    """A worker's course is not the coordinator's version: it refuses the hand-in. args: (message, worker)."""

    def __str__(self) -> str:
        return self.args[0]


def check_gradebook(url: str) -> None:
    """Grading on a cluster needs a gradebook every worker writes to: not a SQLite file on this machine."""
    if make_url(url).get_backend_name() == "sqlite":
        raise ClusterRefused("grading on a cluster needs a gradebook that every worker can reach, and the gradebook is "
                             f"SQLite ({make_url(url).database}), a file on this machine: set GRADEBOOK_URL=postgresql://"
                             "... (see the README), or grade on this machine without CLUSTER. Nothing was graded.")


def check_address(address: str) -> str:
    """The scheduler's address, once something answers there."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        raise ClusterRefused(f"CLUSTER={address!r} is not a Dask scheduler's address: expected tcp://host:port "
                             "(tcp://scheduler:8786). Nothing was graded.")
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as error:
        raise ClusterRefused(f"no Dask scheduler answers at {address} ({error}): start one (`dask scheduler`, see the "
                             "README) or grade on this machine without CLUSTER. Nothing was graded.") from None
    return f"{parts.scheme}://{parts.hostname}:{port}"


def course_version(root: Path, assignment: str) -> str:
    """The hash of what grades `assignment` in the course at `root`: its tests, and the kit."""
    course = layout.Course(Path(root))
    return incremental._digest([("tests", incremental.tests_hash(course, layout.Assignment(assignment)).encode()),
                                ("kit", incremental.kit_hash(course).encode())])


# ---------------------------------------------------------------------------------------------------------------
# On a worker

def worker_course() -> Path:
    return Path(os.environ.get(COURSE_ROOT) or layout.ROOT)


_lock = threading.Lock()
_graders: dict[tuple, workers.Resident] = {}
_slot_held: tuple | None = None  # (the open lock file, its slot)
# Sandbox slots (a kernel uid and an IPC folder each) of this machine's Dask workers, apart from the local pool's.
SLOT_BASE = 100


def _slot() -> int:
    """A slot no other grading worker of this machine holds (a lock file, held while this process lives)."""
    global _slot_held
    if _slot_held is None:
        folder = Path(tempfile.gettempdir()) / "coursekit-grading-slots"
        folder.mkdir(exist_ok=True)
        if folder.stat().st_uid == os.geteuid():
            os.chmod(folder, 0o1777)
        for slot in range(SLOT_BASE, SLOT_BASE + 10_000):
            f = open(folder / f"slot-{slot}", "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            _slot_held = (f, slot)
            break
    return _slot_held[1]


def _where() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return socket.gethostname()


def worker_version(assignment: str) -> dict:
    """What this worker grades `assignment` with: its course's hash, and its gradebook."""
    root = worker_course()
    return {"version": course_version(root, assignment), "gradebook": incremental.gradebook_id(layout.gradebook_url(root)),
            "course": str(root)}


def _grader(root: Path, assignment: str, sandboxed: bool) -> workers.Resident:
    key = (str(root), assignment, sandboxed)
    if key not in _graders:
        for other in _graders.values():
            other.close()
        _graders.clear()
        import multiprocessing

        if multiprocessing.current_process().daemon:
            raise RuntimeError("this Dask worker is a daemon process, which may not start the grading process: start "
                               "workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (see the README)")
        course = layout.Course(root)
        env = ag._sandbox_environment(course, sandboxed)
        ag.load_config(root)
        _graders[key] = workers.Resident(_slot(), ag.grade_one, ag._start_worker,
                                         (str(root), assignment, {**ag.environment(), **env}, sandboxed))
    return _graders[key]


def run_task(hand_in: dict, assignment: str, version: str, gradebook: str, sandboxed: bool) -> dict:
    """A Dask task: grade_one of `hand_in` in this worker's course, if it is the coordinator's `version` and writes
    to its `gradebook`; plain data back (grade_one's, or {"lost": [deaths, how]} or {"raised": error})."""
    mine = worker_version(assignment)
    if mine["version"] != version:
        raise CourseMismatch(f"worker {_where()} refuses to grade {hand_in['student']}: its course ({mine['course']}) is "
                             f"not the coordinator's version of {assignment} (hash {mine['version'][:12]} there, "
                             f"{version[:12]} here: instructor or release notebook, nbgrader_config.py or coursekit "
                             "differ): update it to the same commit and restart the worker", _where())
    if mine["gradebook"] != gradebook:
        raise CourseMismatch(f"worker {_where()} refuses to grade {hand_in['student']}: it writes to the gradebook "
                             f"{mine['gradebook']}, not the coordinator's ({gradebook}): set its GRADEBOOK_URL",
                             _where())
    with _lock:
        result = _grader(worker_course(), assignment, sandboxed).do(hand_in)
    if isinstance(result, workers.Lost):
        return {"student": hand_in["student"], "lost": [result.deaths, result.how]}
    if isinstance(result, workers.Raised):
        return {"student": hand_in["student"], "raised": result.error}
    return result


# ---------------------------------------------------------------------------------------------------------------
# On the coordinator. The functions sent to the cluster are made here from source, so that they travel by value:
# the scheduler unpickles every task, and needs no coursekit; each worker runs its own coursekit.

_REMOTE = '''
def grade_hand_in(hand_in, assignment, version, gradebook, sandboxed):
    from coursekit import cluster
    return cluster.run_task(hand_in, assignment, version, gradebook, sandboxed)


def version_here(assignment):
    from coursekit import cluster
    return cluster.worker_version(assignment)


def configure_scheduler(dask_scheduler=None):
    """One task per worker thread at a time, so that a worker's death charges only the hand-in it grades; a hand-in
    that takes two workers down is given up."""
    before = {"allowed-failures": dask_scheduler.allowed_failures, "worker-saturation": dask_scheduler.WORKER_SATURATION}
    dask_scheduler.allowed_failures = 1
    dask_scheduler.WORKER_SATURATION = 1.0
    return before
'''


def _remote() -> dict[str, Callable]:
    namespace = {"__name__": "coursekit_remote"}
    exec(_REMOTE, namespace)
    return namespace


def _result(student: str, future, error: BaseException | None):
    """A task's plain result as what workers.run gives: grade_one's dict, Lost or Raised."""
    from distributed.scheduler import KilledWorker

    if isinstance(error, KilledWorker):
        return workers.Lost(2, "its Dask worker was lost each time (killed, out of memory?)")
    if error is not None:
        return workers.Raised(f"{type(error).__name__}: {error}")
    result = future.result()
    if "lost" in result:
        return workers.Lost(*result["lost"])
    if "raised" in result:
        return workers.Raised(result["raised"])
    return result


def autograde(course: layout.Course, assignment: layout.Assignment, address: str, sandboxed: bool = True,
              students: list[str] | None = None, on_outcome: Callable | None = None,
              say: Callable[[str], None] = print) -> dict[str, ag.AutogradeOutcome]:
    """autograde.autograde, with each hand-in graded on a worker of the Dask cluster whose scheduler is at `address`."""
    from distributed import Client, as_completed

    check_gradebook(course.gradebook_url)
    if not students:
        return {}
    remote = _remote()
    version = course_version(course.root, assignment.name)
    gradebook = incremental.gradebook_id(course.gradebook_url)
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as error:
        raise ClusterRefused(f"cannot reach the Dask scheduler at {address} ({error}). Nothing was graded.") from None
    with client:
        before = client.run_on_scheduler(remote["configure_scheduler"])
        if before != {"allowed-failures": 1, "worker-saturation": 1.0}:
            say(f"Dask scheduler at {address}: set allowed-failures 1, worker-saturation 1.0 for grading (were {before})")
        try:
            client.wait_for_workers(1, timeout=60)
        except TimeoutError:
            raise ClusterRefused(f"the Dask scheduler at {address} has no workers (waited 60 s): start some "
                                 "(`dask worker`, see the README). Nothing was graded.") from None
        bad = set()
        for worker, found in client.run(remote["version_here"], assignment.name, on_error="return").items():
            if isinstance(found, BaseException):
                say(f"WARNING: worker {worker} cannot say its course's version ({type(found).__name__}: {found}): it is "
                    "not sent hand-ins (is coursekit on its PYTHONPATH?)")
                bad.add(worker)
            elif (found["version"], found["gradebook"]) != (version, gradebook):
                say(f"WARNING: worker {worker} is refused: its course ({found['course']}) is not this version of "
                    f"{assignment} (hash {found['version'][:12]} there, {version[:12]} here) or its gradebook differs; "
                    "it is not sent hand-ins")
                bad.add(worker)

        def good() -> list[str]:
            return [w for w in client.scheduler_info(n_workers=-1)["workers"] if w not in bad]

        if not good():
            raise ClusterRefused(f"no worker of the Dask cluster at {address} has this version of the course: update "
                                 "them and restart them (see the warnings above). Nothing was graded.")
        batch = uuid.uuid4().hex[:12]
        args = dict(assignment=assignment.name, version=version, gradebook=gradebook, sandboxed=sandboxed)

        def send(student: str, attempt: int = 0):
            restrict = {"workers": good(), "allow_other_workers": True} if bad else {}
            return client.submit(remote["grade_hand_in"], ag.staged_hand_in(course, assignment, student),
                                 key=("grade", batch, student, attempt), pure=False, **restrict, **args)

        def threads() -> int:
            found = client.scheduler_info(n_workers=-1)["workers"]
            return max(1, sum(w["nthreads"] for address, w in found.items() if address not in bad))

        # No more tasks on the cluster than its workers have threads: each worker holds only the hand-in it grades,
        # so that its death charges no other (Dask charges every task a dead worker held).
        waiting, in_flight, running = deque(students), 0, []
        refusals = dict.fromkeys(students, 0)
        outcomes = {}
        pending = as_completed()

        def fill() -> None:
            nonlocal in_flight
            while waiting and in_flight < threads():
                running.append(waiting.popleft())
                pending.add(send(running[-1]))
                in_flight += 1

        fill()
        workers_now = len(client.scheduler_info(n_workers=-1)["workers"])
        with ag.progress_bar(len(students), f"Dask, {workers_now} worker{'s' * (workers_now > 1)}") as bar:
            for future in pending:
                student = future.key[2]
                error = future.exception()
                if isinstance(error, CourseMismatch) and refusals[student] < 3:
                    refusals[student] += 1
                    if error.args[1] not in bad:
                        bad.add(error.args[1])
                        say(f"WARNING: {error}; it is not sent hand-ins")
                    future.release()
                    if good():
                        pending.add(send(student, refusals[student]))
                        continue
                result = _result(student, future, error)
                future.release()
                in_flight -= 1
                running.remove(student)
                outcome = ag.outcome(student, result)
                ag.store(course, assignment, student, result.get("files", {}) if isinstance(result, dict) else {})
                outcomes[student] = outcome
                if on_outcome:
                    on_outcome(outcome)
                bar.update(1)
                fill()
                bar.set_postfix_str(", ".join(running))  # sent to the cluster, not yet back
    return outcomes


@contextlib.contextmanager
def local_cluster(folder: Path, course_root: Path, workers: int, env: dict[str, str]):
    """A Dask scheduler and `workers` one-thread workers (with nannies) on 127.0.0.1, grading the course at
    `course_root`, for the benchmark: yields the scheduler's address; every process is stopped afterwards, by pid."""
    dask = str(Path(sys.executable).parent / "dask")
    folder.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    log = (folder / "cluster.log").open("w")
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(folder / "scheduler.json")], cwd=folder, env=base,
                                  stdout=log, stderr=subprocess.STDOUT)]
    try:
        deadline, address = time.monotonic() + 60, None
        while address is None:
            if processes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Dask scheduler did not start: see {folder / 'cluster.log'}")
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                address = json.loads((folder / "scheduler.json").read_text())["address"]
            time.sleep(0.2)
        processes.append(subprocess.Popen(
            [dask, "worker", address, "--host", "127.0.0.1", "--nworkers", str(workers), "--nthreads", "1",
             "--no-dashboard", "--local-directory", str(folder / "workers")], cwd=folder, stdout=log,
            stderr=subprocess.STDOUT, env={**base, "PYTHONPATH": str(layout.ROOT), COURSE_ROOT: str(course_root),
                                           "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}))
        from distributed import Client

        with Client(address, timeout="20s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
