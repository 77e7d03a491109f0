"""Snapshots of the gradebook, taken before a grading batch writes anything, so that no batch can lose it.

A SQLite gradebook is copied with sqlite3's online backup API (a consistent copy, even while another process writes
it) to reports/<assignment>/gradebook-before-<UTC time>.db, mode 0600 (it holds the hidden tests); the last KEEP
snapshots of an assignment are kept. A PostgreSQL gradebook is not copied here: back it up with pg_dump (README,
"The file boundary").
"""

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from . import layout

KEEP = 5
PREFIX = "gradebook-before-"
SQLITE = "sqlite:///"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite gradebook URL (sqlite:///<path>), None for any other database."""
    return Path(url[len(SQLITE):]) if url.startswith(SQLITE) else None


def snapshots(course: layout.Course, assignment: layout.Assignment) -> list[Path]:
    """The assignment's snapshots, oldest first."""
    return sorted(course.reports_of(assignment).glob(f"{PREFIX}*.db"))


def snapshot(course: layout.Course, assignment: layout.Assignment, url: str) -> Path | None:
    """Copies the gradebook at `url` to reports/<assignment>/gradebook-before-<UTC time>.db and keeps the last KEEP
    snapshots; returns the new one (None: no SQLite gradebook yet, or a PostgreSQL one)."""
    database = sqlite_file(url)
    if database is None or not database.is_file():
        return None
    folder = course.reports_of(assignment)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}.db"
    partial = target.with_suffix(".partial")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
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
