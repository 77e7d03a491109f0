"""Snapshots of the gradebook, taken before a grading batch writes anything, so that no batch can lose it.

A SQLite gradebook is copied with sqlite3's online backup API (a consistent copy, even while another process writes
it) to reports/<assignment>/gradebook-before-<UTC time>.db, mode 0600 (it holds the hidden tests); the last KEEP
snapshots of an assignment are kept. A PostgreSQL gradebook is dumped with pg_dump (its custom format, which
pg_restore reads) to reports/<assignment>/gradebook-before-<UTC time>.dump, mode 0600, the last KEEP kept too. A
snapshot that can't be taken stops the batch before anything is graded (SnapshotFailed): README, "The file boundary",
says how to restore one.
"""

import os
import shutil
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from . import layout

KEEP = 5
PREFIX = "gradebook-before-"
SQLITE = "sqlite:///"


class SnapshotFailed(RuntimeError):
    """The gradebook could not be copied before a batch: nothing was graded."""


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite gradebook URL (sqlite:///<path>), None for any other database."""
    return Path(url[len(SQLITE):]) if url.startswith(SQLITE) else None


def snapshots(course: layout.Course, assignment: layout.Assignment) -> list[Path]:
    """The assignment's snapshots, oldest first."""
    folder = course.reports_of(assignment)
    return sorted([*folder.glob(f"{PREFIX}*.db"), *folder.glob(f"{PREFIX}*.dump")], key=lambda p: p.name)


def snapshot(course: layout.Course, assignment: layout.Assignment, url: str) -> Path | None:
    """Copies the gradebook at `url` to reports/<assignment>/gradebook-before-<UTC time>.db and keeps the last KEEP
    snapshots; returns the new one (None: no SQLite gradebook yet, or a PostgreSQL one)."""
    database = sqlite_file(url)
    postgres = url.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")
    if not postgres and (database is None or not database.is_file()):
        return None
    folder = course.reports_of(assignment)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}.{'dump' if postgres else 'db'}"
    partial = target.with_suffix(".partial")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        if postgres:
            _pg_dump(url, partial)
        else:
            source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
            try:
                copy = sqlite3.connect(partial)
                with copy:
                    source.backup(copy)
                copy.close()
            finally:
                source.close()
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    for old in snapshots(course, assignment)[:-KEEP]:
        old.unlink()
    return target


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL (postgresql+psycopg2://...) as libpq, pg_dump and pg_restore read it."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.split("+", 1)[0] in ("postgresql", "postgres") else url


def _pg_dump(url: str, target: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise SnapshotFailed("the gradebook is PostgreSQL and pg_dump is not installed (Debian: postgresql-client), so "
                             "it could not be copied before grading. Nothing was graded.")
    done = subprocess.run([pg_dump, "--format=custom", "--no-password", f"--file={target}", f"--dbname={libpq_url(url)}"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        why = " ".join(done.stderr.split())[:300]
        raise SnapshotFailed(f"pg_dump could not copy the PostgreSQL gradebook before grading ({why}). Nothing was "
                             "graded.")
