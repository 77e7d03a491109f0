"""Benchmarks of grading. Numbers go in the README, not in tests (machines here are noisy).

- `make bench-notebook`: what one hand-in costs to autograde, and where the time goes. It grades a batch of copies of
  the demo solution in a throwaway course directory with one worker, as `make grade` would (forced, every run), with
  warm kernels and with cold ones, and executes it with plain `jupyter nbconvert --execute` in grading mode, in the
  same run: CPU and wall seconds per hand-in, their ratios, and the time of each cell (written to
  reports/<assignment>/bench_grading.json, under "notebook").
- `make bench-grading`: throughput of a batch (at least 20 hand-ins: solutions, typical mistakes and
  untouched releases), graded by one worker and then by one worker per core, and what grading adds on
  top of executing the same notebook with plain `jupyter nbconvert --execute`, and the machine's own ceiling for as
  many CPU-bound processes at once (`machine_ceiling`: shared virtual machines give less than their cores); then the
  same batch on a Dask cluster of one worker per core on this machine against the local pool, as a ratio (PostgreSQL
  gradebook).
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat

from . import autograde, grading, layout, samples
from .results import table


def _seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
    return (end - start).total_seconds()


@contextlib.contextmanager
def _cpu_seconds(every: float = 0.05):
    """Yields a dict that gets, on leaving, the CPU seconds (user + system) that this process and all its descendants
    spent inside the block, and its wall seconds. CPU time does not grow when the machine is busy, so ratios of it are
    fair on a noisy machine.

    The descendants are sampled every `every` seconds (psutil), each counted at its last sample: a grading kernel runs
    in bubblewrap's PID namespace, whose processes the host's accounting of waited-for children never sees
    (RUSAGE_CHILDREN stays 0 for them). A process's last `every` seconds, and processes shorter than that, are missed."""
    import threading

    import psutil

    me, seen, done = psutil.Process(), {}, threading.Event()

    def sample():
        for process in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seen[(process.pid, process.create_time())] = times.user + times.system

    sample()
    before = dict(seen)
    sampler = threading.Thread(target=lambda: [sample() for _ in iter(lambda: done.wait(every), True)], daemon=True)
    found, start = {}, time.perf_counter()
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()
        sample()
        found["cpu"] = round(sum(cpu - before.get(key, 0.0) for key, cpu in seen.items()), 2)
        found["wall"] = round(time.perf_counter() - start, 2)


@contextlib.contextmanager
def _kernels(warm: bool):
    """Grading workers started inside the block fork their kernels warm from a zygote, or start them cold."""
    before = os.environ.get(autograde.WARM_SWITCH)
    os.environ[autograde.WARM_SWITCH] = "1" if warm else "0"
    try:
        yield
    finally:
        os.environ.pop(autograde.WARM_SWITCH)
        if before is not None:
            os.environ[autograde.WARM_SWITCH] = before


def run(assignment: layout.Assignment, repeats: int = 2, hand_ins: int = 8) -> dict:
    """A batch of `hand_ins` copies of the solution graded `repeats` times by one worker, as `make grade` grades it
    (forced: the incremental record never skips it), with warm kernels and with cold ones, and the solution executed
    `repeats` times with plain `jupyter nbconvert --execute` in grading mode, in the same run: CPU and wall seconds per
    hand-in (the batch's, worker and zygote start-up included, divided by `hand_ins`), their medians' ratios to plain
    nbconvert, and the time of each cell of a graded hand-in."""
    with tempfile.TemporaryDirectory() as tmp:
        course = layout.copy_course(Path(tmp) / "course")
        grading.release(course, assignment)
        solution = samples.notebooks(course, assignment)["solution"]
        for i in range(hand_ins):
            folder = layout.submission_dir(course.submitted, f"bench-{i + 1:02d}", assignment)
            folder.mkdir(parents=True)
            nbformat.write(solution, folder / assignment.notebook)
        graded = {"cold": [], "warm": []}
        for _ in range(repeats):
            for kind in graded:  # interleaved, so that a busy spell of the machine weighs on both; warm last
                with _kernels(kind == "warm"), _cpu_seconds() as spent:
                    results = grading.grade(course, assignment, jobs=1, force=True)
                assert [r.status for r in results] == ["graded"] * hand_ins, table(results)
                graded[kind].append({key: round(value / hand_ins, 2) for key, value in spent.items()})
        # the time of each cell of a hand-in graded warm, as nbgrader recorded it (a cell skipped while graded: 0 s)
        graded_nb = nbformat.read(layout.submission_dir(course.autograded, "bench-01", assignment) / assignment.notebook,
                                  as_version=4)
        cells = [{"cell": c.metadata.get("nbgrader", {}).get("grade_id") or c.id, "seconds": round(_seconds(c), 2)}
                 for c in graded_nb.cells if c.cell_type == "code"]
        plain = _plain_nbconvert(course, assignment, repeats)
    median = {kind: {key: statistics.median(r[key] for r in runs) for key in ("cpu", "wall")}
              for kind, runs in (*graded.items(), ("plain", plain))}
    ratio = {kind: {key: round(median[kind][key] / median["plain"][key], 3) for key in ("cpu", "wall")}
             for kind in graded}
    return {"assignment": assignment.name, "repeats": repeats, "hand_ins": hand_ins, "graded_warm": graded["warm"],
            "graded_cold": graded["cold"], "plain_nbconvert": plain, "median": median,
            "cpu_ratio": ratio["warm"]["cpu"], "wall_ratio": ratio["warm"]["wall"], "cold_cpu_ratio": ratio["cold"]["cpu"],
            "cold_wall_ratio": ratio["cold"]["wall"], "cells": cells}


def notebook_report(found: dict) -> str:
    median = found["median"]
    slowest = sorted(found["cells"], key=lambda c: -c["seconds"])[:6]
    return "\n".join([
        f"{found['assignment']}: batches of {found['hand_ins']} hand-ins (the solution) graded by one worker, "
        f"{found['repeats']} runs of each; per hand-in, medians",
        f"  `make grade` (forced; nbgrader, sandbox, checks, references; start-up shared by the batch), warm kernels: "
        f"{median['warm']['cpu']:.2f} s CPU, {median['warm']['wall']:.2f} s wall",
        f"  the same with cold kernels (COURSEKIT_WARM_KERNELS=0): {median['cold']['cpu']:.2f} s CPU, "
        f"{median['cold']['wall']:.2f} s wall",
        f"  plain `jupyter nbconvert --execute` in grading mode: {median['plain']['cpu']:.2f} s CPU, "
        f"{median['plain']['wall']:.2f} s wall",
        f"  ratio to plain nbconvert: warm {found['cpu_ratio']:.2f}x CPU, {found['wall_ratio']:.2f}x wall; "
        f"cold {found['cold_cpu_ratio']:.2f}x CPU, {found['cold_wall_ratio']:.2f}x wall",
        "  slowest cells of a graded hand-in: " + ", ".join(f"{c['cell']} {c['seconds']:.1f} s" for c in slowest)])


def _batch_course(folder: Path, assignment: layout.Assignment, submissions: int) -> layout.Course:
    """A released course directory with `submissions` hand-ins, cycling through the gradable demo samples."""
    course = layout.copy_course(folder)
    grading.release(course, assignment)
    kinds = list(samples.notebooks(course, assignment).values())
    for i in range(submissions):
        student = layout.submission_dir(course.submitted, f"bench-{i + 1:02d}", assignment)
        student.mkdir(parents=True)
        nbformat.write(kinds[i % len(kinds)], student / assignment.notebook)
    return course


def _plain_nbconvert(course: layout.Course, assignment: layout.Assignment, repeats: int) -> list[dict]:
    """`jupyter nbconvert --execute` of the solution in grading mode, no nbgrader, no sandbox: CPU and wall seconds."""
    work = course.root / "build" / "plain"
    work.mkdir(parents=True, exist_ok=True)
    for item in course.release_notebook(assignment).parent.iterdir():  # the notebook's data/ next to it, as when graded
        if item.is_dir() and not (work / item.name).exists():
            os.symlink(item, work / item.name)
    nbformat.write(samples.notebooks(course, assignment)["solution"], work / assignment.notebook)
    times = []
    for _ in range(repeats):
        with _cpu_seconds() as spent:
            subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                            "--ExecutePreprocessor.timeout=600", "--output", "executed", assignment.notebook],
                           cwd=work, env={**autograde.environment(), "NBGRADER_EXECUTION": "autograde"},
                           check=True, capture_output=True)
        times.append(spent)
    return times


_SPIN = "n = 0\nfor i in range(20_000_000):\n    n += i\n"  # pure CPU work, about 2 s here


def machine_ceiling(jobs: int, repeats: int = 3) -> float:
    """How much faster this machine runs `jobs` CPU-bound processes at once than one after the other: the most that
    `jobs` grading workers can gain on it (shared virtual machines give less than `jobs`). Median of `repeats`."""
    def seconds(processes: int) -> float:
        start = time.perf_counter()
        running = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(processes)]
        for process in running:
            process.wait()
        return time.perf_counter() - start

    return round(statistics.median(jobs * seconds(1) / seconds(jobs) for _ in range(repeats)), 2)


def grading_throughput(assignment: layout.Assignment, submissions: int = 20, jobs: int | None = None,
                       repeats: int = 3) -> dict:
    """Seconds and hand-ins per minute for a batch graded sequentially and in parallel, and the time of a
    plain nbconvert execution of one notebook."""
    jobs = jobs or autograde.default_jobs()
    result = {"assignment": assignment.name, "submissions": submissions, "cores": autograde.default_jobs(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in dict.fromkeys([1, jobs]):
            course = _batch_course(Path(tmp) / f"course-{workers}", assignment, submissions)
            start = time.perf_counter()
            results = grading.grade(course, assignment, jobs=workers)
            seconds = time.perf_counter() - start
            assert all(r.status == "graded" for r in results), table(results)
            result["runs"][workers] = {"seconds": round(seconds, 1), "per_submission": round(seconds / submissions, 2),
                                       "per_minute": round(60 * submissions / seconds, 1)}
        plain = _plain_nbconvert(course, assignment, repeats)
    result["plain_nbconvert_seconds"] = round(statistics.median(p["wall"] for p in plain), 2)
    if jobs > 1:
        result["speedup"] = round(result["runs"][1]["seconds"] / result["runs"][jobs]["seconds"], 2)
        result["machine_ceiling"] = machine_ceiling(jobs)
    return result


def grading_report(result: dict) -> str:
    plain = result["plain_nbconvert_seconds"]
    lines = [f"{result.get('assignment', '')}: {result['submissions']} hand-ins, {result['cores']} cores; `make grade` "
             "includes intake, repair, the sandbox, nbgrader and the reports",
             f"{'workers':>8}  {'batch':>8}  {'per hand-in':>11}  {'hand-ins/min':>12}  {'vs plain nbconvert':>18}"]
    for workers, run in result["runs"].items():
        lines.append(f"{workers:>8}  {run['seconds']:>7.1f}s  {run['per_submission']:>10.2f}s  {run['per_minute']:>12.1f}"
                     f"  {run['per_submission'] / plain:>17.2f}x")
    lines.append(f"plain `jupyter nbconvert --execute` of one notebook in grading mode (median): {plain:.2f} s")
    if "speedup" in result:
        lines.append(f"{max(result['runs'])} workers grade {result['speedup']:.2f}x faster than one; this machine runs "
                     f"{max(result['runs'])} CPU-bound processes {result['machine_ceiling']:.2f}x faster than one "
                     "after the other (the ceiling)")
    return "\n".join(lines)


def write_grading_json(result: dict, path: Path) -> Path:
    """`result`'s figures into the assignment's bench_grading.json, beside those of the other benchmark kept there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**kept, **result}, indent=1) + "\n")
    return path


@contextlib.contextmanager
def _postgres():
    """A throwaway PostgreSQL server (Debian's, which `make setup` installs) on a unix socket in a folder of its own:
    yields a function that makes a database and returns its URL. As root, the server runs as `postgres`."""
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("the cluster row needs PostgreSQL (Debian's postgresql, which `make setup` installs)")
    bindir, as_postgres = Path(found[-1]).parent, ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # its own: `postgres` can't go into root's temporary folders
    if as_postgres:
        shutil.chown(folder, "postgres")
    data = folder / "data"
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                    f"-k {folder} -c listen_addresses='' -c fsync=off", "start"], check=True, capture_output=True)

    def database(name: str) -> str:
        subprocess.run([*as_postgres, str(bindir / "createdb"), "-h", str(folder), "-U", "postgres", name],
                       check=True, capture_output=True)
        return f"postgresql://postgres@/{name}?host={folder}"
    try:
        yield database
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def cluster_against_pool(assignment: layout.Assignment, submissions: int = 20, jobs: int | None = None) -> dict:
    """The same batch graded by the local pool of `jobs` workers and by a Dask cluster of `jobs` one-thread workers
    on this machine (scheduler and workers started first, not timed), both into a PostgreSQL gradebook."""
    from . import cluster

    jobs = jobs or autograde.default_jobs()
    found = {"submissions": submissions, "workers": jobs}
    before = os.environ.get(layout.GRADEBOOK_URL)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, _postgres() as database:
        try:
            for path in ("pool", "cluster"):
                os.environ[layout.GRADEBOOK_URL] = database(path)
                course = _batch_course(Path(tmp) / path / "course", assignment, submissions)
                with contextlib.ExitStack() as stack:
                    address = None
                    if path == "cluster":
                        workers_course = layout.copy_course(Path(tmp) / path / "worker-course", course)
                        address = stack.enter_context(cluster.local_cluster(Path(tmp) / path / "dask",
                                                                            workers_course.root, jobs, dict(os.environ)))
                    start = time.perf_counter()
                    results = grading.grade(course, assignment, jobs=jobs, cluster=address)
                    found[path] = round(time.perf_counter() - start, 1)
                assert all(r.status == "graded" for r in results), table(results)
        finally:
            os.environ.pop(layout.GRADEBOOK_URL, None)
            if before is not None:
                os.environ[layout.GRADEBOOK_URL] = before
    found["ratio"] = round(found["cluster"] / found["pool"], 3)
    return found


def cluster_report(found: dict) -> str:
    return (f"Dask cluster of {found['workers']} one-thread workers on this machine against the local pool of "
            f"{found['workers']}, {found['submissions']} hand-ins into PostgreSQL: {found['cluster']:.1f} s against "
            f"{found['pool']:.1f} s, ratio {found['ratio']:.3f} (the goal: at most 1.15)")
