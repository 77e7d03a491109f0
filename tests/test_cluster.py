"""Grading on a Dask cluster (coursekit/cluster.py): a real `dask scheduler` and `dask worker` processes on
127.0.0.1, and the test PostgreSQL gradebook. The cluster grades like the local pool (scores, notes, check lines,
gradebook), a worker killed mid-batch loses no hand-in, a worker with another version of the course is refused,
and bad settings are refused before anything is graded. Every process started here is stopped by its pid."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
import pytest
from nbgrader.api import Gradebook

import dying
import gradebooks
from coursekit import checks, cli, cluster as dask_cluster, grading, incremental, layout, results as scores, samples
from assignments import PW3

DASK = str(Path(sys.executable).parent / "dask")
BATCH = {"ada": "solution", "bob": "mistakes", "cy": "untouched"}
STRICTER = "def verdict_temperature_batch(output):\n"


@dataclass
class Cluster:
    address: str
    folder: Path
    url: str                   # the PostgreSQL gradebook
    course: layout.Course      # the coordinator's
    worker_env: dict
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, name: str, course: layout.Course) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("w")
        process = subprocess.Popen(
            [DASK, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--name", name, "--local-directory", str(self.folder / name)],
            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
            env={**self.worker_env, dask_cluster.COURSE_ROOT: str(course.root)})
        self.processes[name] = process
        return process

    def client(self):
        from distributed import Client

        return Client(self.address, timeout="20s")

    def workers(self) -> dict[str, str]:
        """{worker name: address}"""
        with self.client() as client:
            return {w["name"]: address for address, w in client.scheduler_info(n_workers=-1)["workers"].items()}

    def wait_for_workers(self, names: set[str], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not names <= set(self.workers()):
            assert time.monotonic() < deadline, f"workers {names} did not start: " + "".join(
                (self.folder / f"{n}.log").read_text() for n in names)
            time.sleep(0.5)


def _stop(processes) -> None:
    """Every process, and every process it started, killed by pid (SIGKILL: nothing of theirs is kept); none left."""
    family = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            family += [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    _, alive = psutil.wait_procs(family, timeout=15)
    for process in processes:
        process.wait(timeout=10)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], alive


def _hand_in(course: layout.Course, student: str, notebook) -> None:
    folder = layout.submission_dir(course.submitted, student, PW3)
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / PW3.notebook)


@pytest.fixture(scope="module")
def postgres():
    with gradebooks.postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def dask(tmp_path_factory, postgres):
    folder = tmp_path_factory.mktemp("dask")
    url = postgres.create_database("cluster")
    course = layout.copy_course(folder / "course")
    with gradebooks.gradebook_url(url):
        grading.release(course, PW3)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", layout.GRADEBOOK_URL)}
    # The scheduler runs without coursekit on its path: it gets tasks it can unpickle without it.
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(folder / "scheduler.json")], cwd=folder,
                                 stdout=(folder / "scheduler.log").open("w"), stderr=subprocess.STDOUT, env=env)
    worker_env = {**env, "PYTHONPATH": str(layout.ROOT), layout.GRADEBOOK_URL: url,
                  "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    started = Cluster("", folder, url, course, worker_env, {"scheduler": scheduler})
    try:
        deadline = time.monotonic() + 60
        while not started.address:
            assert scheduler.poll() is None and time.monotonic() < deadline, (folder / "scheduler.log").read_text()
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                started.address = json.loads((folder / "scheduler.json").read_text())["address"]
            time.sleep(0.2)
        workers_course = layout.copy_course(folder / "worker-course", course)  # the workers' own copy
        for name in ("good-1", "good-2"):
            started.start_worker(name, workers_course)
        started.wait_for_workers({"good-1", "good-2"})
        yield started
    finally:
        _stop(list(started.processes.values()))


@pytest.fixture(scope="module")
def batch(dask, tmp_path_factory):
    """The batch graded on the cluster, one worker killed (SIGKILL, by its pid) while it grades; and graded again by
    the local pool in a course of its own."""
    notebooks = samples.notebooks(dask.course, PW3)
    for student, sample in BATCH.items():
        _hand_in(dask.course, student, notebooks[sample])
    addresses = dask.workers()
    victim = dask.processes["good-1"]
    killed = {}

    def kill_when_busy():
        with dask.client() as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if client.processing().get(addresses["good-1"]):
                    time.sleep(3)  # well into grading it
                    if client.processing().get(addresses["good-1"]):
                        killed["task"] = list(client.processing()[addresses["good-1"]])
                        killed["children"] = psutil.Process(victim.pid).children(recursive=True)
                        os.kill(victim.pid, signal.SIGKILL)
                        return
                time.sleep(0.2)

    stored = []
    real_append = incremental.append

    def append(course, assignment, record):
        stored.append(record.student)
        real_append(course, assignment, record)
    killer = threading.Thread(target=kill_when_busy)
    with gradebooks.gradebook_url(dask.url), pytest.MonkeyPatch.context() as patch:
        patch.setattr(incremental, "append", append)
        killer.start()
        on_cluster = grading.grade(dask.course, PW3, cluster=dask.address)
        killer.join()
    local = layout.copy_course(tmp_path_factory.mktemp("local") / "course")
    grading.release(local, PW3)
    for student in BATCH:
        shutil.copytree(dask.course.submitted / student, local.submitted / student)
    on_pool = grading.grade(local, PW3, jobs=2)
    return {"cluster": on_cluster, "pool": on_pool, "local": local, "killed": killed, "stored": stored,
            "victim": victim}


def _check_lines(course: layout.Course, student: str):
    path = layout.submission_dir(course.autograded, student, PW3) / PW3.notebook
    return checks.by_test_cell(nbformat.read(path, as_version=4))


def _cell_scores(course: layout.Course, url: str | None) -> dict[str, dict[str, float]]:
    with gradebooks.gradebook_url(url), Gradebook(scores.db_url(course)) as gb:
        return {s.student.id: {g.name: g.score for n in s.notebooks for g in n.grades}
                for s in gb.assignment_submissions(PW3.name)}


def test_the_cluster_grades_like_the_local_pool(dask, batch):
    assert {r.student: r.status for r in batch["cluster"]} == dict.fromkeys(BATCH, "graded")
    assert list(batch["cluster"]) == list(batch["pool"])  # scores per exercise, notes
    assert {r.student: r.score for r in batch["cluster"]}["ada"] == 100
    for student in BATCH:
        assert _check_lines(dask.course, student) == _check_lines(batch["local"], student), student
    assert _cell_scores(dask.course, dask.url) == _cell_scores(batch["local"], None)
    assert not dask.course.gradebook.exists(), "the workers wrote to PostgreSQL"


def test_a_worker_killed_mid_batch_loses_nothing_and_each_hand_in_is_graded_once(dask, batch):
    assert batch["killed"], "the worker was never seen grading"
    assert batch["victim"].poll() == -signal.SIGKILL
    # its grading process and the kernel it ran died with it
    assert len(batch["killed"]["children"]) >= 2, batch["killed"]["children"]
    _, alive = psutil.wait_procs(batch["killed"]["children"], timeout=15)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], alive
    assert sorted(batch["stored"]) == sorted(BATCH)  # each hand-in's outcome kept once
    assert batch["cluster"].graded == sorted(BATCH)
    with gradebooks.gradebook_url(dask.url), Gradebook(scores.db_url(dask.course)) as gb:
        assert sorted(s.student.id for s in gb.assignment_submissions(PW3.name)) == sorted(BATCH)


def test_a_worker_on_another_course_version_is_refused(dask, batch, capsys):
    bad = layout.copy_course(dask.folder / "bad-course", dask.course)
    nb = nbformat.read(bad.source_notebook(PW3), as_version=4)
    [cell] = [c for c in nb.cells if STRICTER in c.source]
    cell.source = cell.source.replace(STRICTER, STRICTER + "    raise AssertionError('another version')\n")
    nbformat.write(nb, bad.source_notebook(PW3))
    dask.start_worker("other-version", bad)
    dask.wait_for_workers({"other-version"})
    address = dask.workers()["other-version"]
    remote = dask_cluster._remote()
    hand_in = {"student": "ada", "files": {}}
    version = dask_cluster.course_version(dask.course.root, PW3.name)
    with gradebooks.gradebook_url(dask.url):
        gradebook = incremental.gradebook_id(scores.db_url(dask.course))
    with dask.client() as client:
        refused = client.submit(remote["grade_hand_in"], hand_in, PW3.name, version, gradebook, True,
            workers=[address], allow_other_workers=False, pure=False)
        with pytest.raises(dask_cluster.CourseMismatch, match="refuses to grade ada: its course .* is not the "
                           "coordinator's version of pw3_decoding"):
            refused.result(timeout=60)
    # a late hand-in, graded while the mismatched worker is up: it is never sent there
    _hand_in(dask.course, "eve", samples.notebooks(dask.course, PW3)["solution"])
    with gradebooks.gradebook_url(dask.url):
        late = grading.grade(dask.course, PW3, cluster=dask.address)
    assert late.graded == ["eve"] and {r.student: r.score for r in late}["eve"] == 100  # 99 with the other tests
    assert f"WARNING: worker {address} is refused: its course" in capsys.readouterr().out


@pytest.mark.parametrize("cluster, gradebook, message", [
    ("tcp://127.0.0.1:8786", None, "ERROR: grading on a cluster needs a gradebook that every worker can reach, and "
                                   "the gradebook is SQLite"),
    ("nonsense", "postgres", "ERROR: CLUSTER='nonsense' is not a Dask scheduler's address"),
    ("tcp://127.0.0.1:1", "postgres", "ERROR: no Dask scheduler answers at tcp://127.0.0.1:1"),
])
def test_make_grade_refuses_a_cluster_it_cannot_use_and_grades_nothing(tmp_path, monkeypatch, capsys, cluster,
                                                                       gradebook, message):
    course = layout.copy_course(tmp_path / "course")
    _hand_in(course, "ada", nbformat.read(course.release_notebook(PW3), as_version=4))
    monkeypatch.setattr(cli, "COURSE", course)
    url = "postgresql://nobody@/nowhere?host=/nonexistent" if gradebook else None
    with gradebooks.gradebook_url(url):
        assert cli.main(["grade", "--assignment", PW3.name, "--cluster", cluster]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (course.root / "reports").exists() and not course.gradebook.exists() and not course.autograded.exists()


def test_a_dask_workers_grading_process_that_dies_twice_on_a_hand_in_gives_it_up_and_goes_on(tmp_path):
    """What a Dask worker runs a hand-in in (workers.Resident): a death is tried once more on a fresh process,
    then the hand-in is Lost (reported failed); the next hand-in is graded as usual."""
    from coursekit import workers

    resident = workers.Resident(0, dying.grade_or_die, dying.start, (str(tmp_path / "calls"),))
    try:
        assert resident.do("bob") == "graded bob"
        assert resident.do("ada") == workers.Lost(2, "killed by SIGKILL (out of memory?)")
        assert resident.do("cy") == "graded cy"
    finally:
        resident.close()
    assert (tmp_path / "calls").read_text().split() == ["bob", "ada", "ada", "cy"]
