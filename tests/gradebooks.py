"""Test helpers for the gradebook and the formgrader: a throwaway PostgreSQL server, a small course graded
through the whole cycle (against whichever gradebook GRADEBOOK_URL names), and JupyterLab serving a course.

Not fixtures themselves: test_postgres.py and test_formgrader.py build their fixtures from these.
"""

import contextlib
import csv
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from coursekit import autograde, export, grading, layout, results as scores, samples
from assignments import PW2

# The tests grade throwaway courses: never into the gradebook an instructor's GRADEBOOK_URL names. (Importing
# this module, which collecting the suite does, clears it for the whole session; `make test` clears it too.)
os.environ.pop(layout.GRADEBOOK_URL, None)

# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin() -> Path:
    """Debian's PostgreSQL server programs (initdb, pg_ctl); the test fails, rather than skips, without them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): `make setup` installs "
                    "Debian's postgresql (as root)")
    return Path(found[-1]).parent


@dataclass
class PostgresServer:
    folder: Path  # data directory, log, and the server's unix socket: it listens on no TCP port

    def connect(self, dbname: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=str(self.folder), user="postgres", dbname=dbname)

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL as an instructor would write it in GRADEBOOK_URL."""
        connection = self.connect()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        return f"postgresql://postgres@/{name}?host={self.folder}"

    def query(self, dbname: str, sql: str) -> list[tuple]:
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            connection.close()


@contextlib.contextmanager
def postgres_server():
    """A PostgreSQL server of its own in a temporary folder, stopped and deleted afterwards.

    PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user (runuser). It listens
    only on a unix socket in its folder (no port to collide with another server), trusts local connections
    as the `postgres` role, and skips fsync: the data is thrown away anyway."""
    bindir = postgres_bin()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="pw2-pg-"))  # short: a socket's path is limited to 107 bytes
    if as_postgres:
        shutil.chown(folder, "postgres")
    data, log = folder / "data", folder / "server.log"

    def run(*command: str) -> None:
        done = subprocess.run([*as_postgres, *command], capture_output=True, text=True)
        if done.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{server_log}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
            f"-k {folder} -c listen_addresses='' -c fsync=off", "start")
        try:
            yield PostgresServer(folder)
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def gradebook_url(url: str | None):
    """GRADEBOOK_URL set to `url` (None: unset, the SQLite default) for this process and the nbgrader it starts."""
    before = os.environ.pop(layout.GRADEBOOK_URL, None)
    if url is not None:
        os.environ[layout.GRADEBOOK_URL] = url
    try:
        yield
    finally:
        os.environ.pop(layout.GRADEBOOK_URL, None)
        if before is not None:
            os.environ[layout.GRADEBOOK_URL] = before


# ---------------------------------------------------------------------------------------------------------------
# A small course, graded through the whole cycle

# Three hand-ins keep the cycle to a minute or so: the solution, typical mistakes, and an empty file.
HANDINS = {"ada-lovelace": "solution", "alan-turing": "mistakes", "grace-hopper": None}
GRADED_STUDENTS = ["ada-lovelace", "alan-turing"]


@dataclass
class SmallCourse:
    course: layout.Course
    url: str                                  # the gradebook it was graded into
    results: dict[str, scores.Result]        # coursekit's results, by student
    cell_scores: dict[str, dict[str, float]]  # the gradebook's score of every graded cell, by student
    export: list[dict[str, str]]              # `make export`'s reports/grades.csv, one row per student


def write_handins(course: layout.Course, handins: dict | None = None) -> None:
    """The hand-ins by student: a sample's name, a notebook, or None (an empty file); HANDINS by default."""
    notebooks = samples.notebooks(course, PW2)
    for student, sample in (HANDINS if handins is None else handins).items():
        folder = layout.submission_dir(course.submitted, student, PW2)
        folder.mkdir(parents=True)
        notebook = notebooks[sample] if isinstance(sample, str) else sample
        (folder / PW2.notebook).write_text(nbformat.writes(notebook) if notebook else "", encoding="utf-8")


def grade_small_course(root: Path, url: str | None = None, handins: dict | None = None) -> SmallCourse:
    """Release, hand-ins (HANDINS unless `handins` says otherwise: see write_handins), `make grade`'s grading,
    feedback and export, in a new course at `root`, with the gradebook at `url` (None: the default, SQLite
    gradebook.db)."""
    with gradebook_url(url):
        course = layout.copy_course(root)
        grading.release(course, PW2)
        write_handins(course, handins)
        results = grading.grade(course, PW2)
        grading.feedback(course, PW2)
        with export.write_grades(course, [PW2], export.rows(course, [PW2])).open(newline="") as f:
            exported = sorted(csv.DictReader(f), key=lambda row: row["student_id"])
        db = scores.db_url(course)
        cell_scores = {}
        with Gradebook(db) as gb:
            for student in [r.student for r in results if r.status == "graded"]:
                notebook = gb.find_submission_notebook(PW2.notebook_id, PW2.name, student)
                cell_scores[student] = {g.name: g.score for g in notebook.grades}
    return SmallCourse(course, db, {r.student: r for r in results}, cell_scores, exported)


_small_sqlite_course: SmallCourse | None = None


def small_sqlite_course(tmp_path_factory) -> SmallCourse:
    """The small course graded with the default SQLite gradebook, once per test session."""
    global _small_sqlite_course
    if _small_sqlite_course is None:
        _small_sqlite_course = grade_small_course(tmp_path_factory.mktemp("small-course") / "course")
    return _small_sqlite_course


# ---------------------------------------------------------------------------------------------------------------
# JupyterLab and its formgrader


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str    # http://127.0.0.1:PORT
    token: str
    log: Path

    def page(self, path: str) -> str:
        return f"{self.url}{path}?token={self.token}"


@contextlib.contextmanager
def jupyter_lab(course: layout.Course, workdir: Path, timeout: float = 120):
    """JupyterLab serving `course` as `make lab` does (in the course root, which nbgrader_config.py configures),
    on a free port, with its Jupyter config, data and runtime folders in `workdir`; stopped afterwards."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**autograde.environment(), "JUPYTER_CONFIG_DIR": str(workdir / "config"),
           "JUPYTER_DATA_DIR": str(workdir / "data"), "JUPYTER_RUNTIME_DIR": str(workdir / "runtime")}
    log = workdir / "lab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser",
               f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={course.root}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=course.root, env=env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(lab.page("/api/status"), timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()}")
            time.sleep(0.5)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def formgrader_assignments(page, lab: Lab) -> list[dict[str, str]]:
    """The formgrader's assignment table (Manage Assignments), once its rows are loaded: name, status, submissions."""
    page.goto(lab.page("/formgrader"))
    page.wait_for_selector("#main-table td.num-submissions", timeout=60_000)
    return page.eval_on_selector_all("#main-table tr", """rows => rows.map(r => ({
        name: r.querySelector('td.name')?.innerText.trim(), status: r.querySelector('td.status')?.innerText.trim(),
        submissions: r.querySelector('td.num-submissions')?.innerText.trim()}))""")


def formgrader_submissions(page, lab: Lab) -> dict[str, dict[str, str]]:
    """The formgrader's submissions of the assignment (Manage Submissions), by student id: status and score.

    Reached as a person does, by clicking the number of submissions on the assignments page: opened first, the
    submissions page stays at "Loading, please wait..." (it doesn't set the XSRF cookie its requests need)."""
    formgrader_assignments(page, lab)
    page.click("#main-table td.num-submissions a")
    page.wait_for_url(f"**/formgrader/manage_submissions/{PW2.name}*")
    page.wait_for_selector("#main-table td.student-id", timeout=60_000)
    rows = page.eval_on_selector_all("#main-table tr", """rows => rows.map(r => [
        r.querySelector('td.student-id')?.innerText.trim(), r.querySelector('td.status')?.innerText.trim(),
        r.querySelector('td.score')?.innerText.trim()])""")
    return {student: {"status": status, "score": score} for student, status, score in rows}


def visible_alerts(page) -> list[str]:
    """The text of every visible Bootstrap alert (nbgrader's warnings and errors: .alert-warning, .alert-danger, ...)."""
    return page.eval_on_selector_all(".alert", "els => els.filter(e => e.offsetParent !== null).map(e => e.innerText)")
