"""Incremental and resumable grading: what was graded, with which tests, so that `make grade` grades only what changed.

Each hand-in graded leaves one line in reports/<assignment>/grading-state.jsonl, written (and flushed to disk) as
soon as it is stored, before the batch ends: the hash of the staged hand-in (its notebook after repair, and the
submission time), the fingerprint of what graded it (the hash of the assignment's tests, i.e. its instructor and
release notebooks, and of the kit, i.e. coursekit's code and nbgrader_config.py), whether nbgrader graded it, its
log, note and points. A hand-in is *unchanged*, and not graded again, when its last line has the same hashes, it
was graded, and its autograded notebook and its grades are still there (in the gradebook graded into). Everything
else is graded: a new or changed hand-in, one that failed, every hand-in after the tests or the kit changed, every
hand-in with `make grade FORCE=1`.

So an interrupted batch (Ctrl-C, a reboot) resumes where it stopped: what was graded is on record, what was being
graded is not, and is graded again. A torn last line (the machine stopped mid-write) is ignored.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.engine import make_url

from . import layout

KIT = Path(__file__).resolve().parent


def _digest(parts: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in parts:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def tests_hash(course: layout.Course, assignment: layout.Assignment) -> str:
    """The assignment's tests: its instructor notebook (public and hidden tests, grader-only verdicts) and its
    release (what hand-ins are repaired against)."""
    return _digest([("source", course.source_notebook(assignment).read_bytes()),
                    ("release", course.release_notebook(assignment).read_bytes())])


def kit_hash(course: layout.Course) -> str:
    """The kit that grades: every file of the coursekit package, at any depth (its subpackages and templates too: a
    subpackage left out would let stale grades stand), and the course's nbgrader_config.py."""
    files = sorted(p for p in KIT.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return _digest([(str(p.relative_to(KIT)), p.read_bytes()) for p in files]
                   + [("config", (course.root / "nbgrader_config.py").read_bytes())])


def handin_hash(course: layout.Course, assignment: layout.Assignment, student: str, deadline: str = "") -> str:
    """The staged hand-in: every file intake wrote for it (the repaired notebook, the submission time), and the
    deadline it is held to (the due date and the student's extension: a new one changes the late penalty)."""
    folder = layout.submission_dir(course.staging(assignment), student, assignment)
    return _digest([(str(p.relative_to(folder)), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
                   + [("\0deadline", deadline.encode())])


def gradebook_id(url: str) -> str:
    """Which gradebook, without its password."""
    return make_url(url).render_as_string(hide_password=True)


@dataclass
class Record:
    student: str
    handin: str
    tests: str
    kit: str
    gradebook: str
    success: bool
    seconds: float = 0.0
    reason: str = ""
    note: str = ""
    log: str = ""
    # The points of every test cell before this grading, when it was a re-grading after the tests or the kit
    # changed (for the re-grading audit); None otherwise.
    before: dict | None = None
    scores: dict = field(default_factory=dict)


def state_path(course: layout.Course, assignment: layout.Assignment) -> Path:
    return course.reports_of(assignment) / "grading-state.jsonl"


def load(course: layout.Course, assignment: layout.Assignment) -> dict[str, Record]:
    """Every student's last record (a line that cannot be read, torn by a crash, is skipped)."""
    path = state_path(course, assignment)
    found = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = Record(**json.loads(line))
            except (ValueError, TypeError):
                continue
            found[record.student] = record
    return found


def append(course: layout.Course, assignment: layout.Assignment, record: Record) -> None:
    """One more record, on disk before this returns."""
    path = state_path(course, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pending_path(course: layout.Course, assignment: layout.Assignment) -> Path:
    return course.reports_of(assignment) / "regrade-before.json"


def pending_before(course: layout.Course, assignment: layout.Assignment, target: list[str]) -> dict[str, dict | None]:
    """The points students had before a re-grading towards `target` (tests, kit and gradebook hashes) that started
    and was interrupted: read from the gradebook when it started, before any hand-in was graded again (a resumed
    batch must not take the points that the interrupted one already wrote for "before")."""
    path = pending_path(course, assignment)
    try:
        found = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        return {}
    return found.get("points", {}) if found.get("target") == target else {}


def save_pending_before(course: layout.Course, assignment: layout.Assignment, target: list[str],
                        points: dict[str, dict | None]) -> None:
    """On disk before any hand-in of the re-grading is graded (see pending_before); removed once its audit is made."""
    path = pending_path(course, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"target": target, "points": points}, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)


def compact(course: layout.Course, assignment: layout.Assignment) -> None:
    """The state file with only each student's last record (after a batch: each grading added lines)."""
    path = state_path(course, assignment)
    records = load(course, assignment)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records.values()),
                         encoding="utf-8")
    os.replace(temporary, path)


def still_graded(gb: Gradebook, course: layout.Course, assignment: layout.Assignment, student: str) -> bool:
    """The student's autograded notebook and grades are still there."""
    if not (layout.submission_dir(course.autograded, student, assignment) / assignment.notebook).is_file():
        return False
    try:
        gb.find_submission_notebook(assignment.notebook_id, assignment.name, student)
    except MissingEntry:
        return False
    return True


def unchanged(record: Record | None, handin: str, tests: str, kit: str, gradebook: str) -> bool:
    """The record says this very hand-in was graded, by these tests and this kit, into this gradebook."""
    return record is not None and record.success and (record.handin, record.tests, record.kit, record.gradebook) \
        == (handin, tests, kit, gradebook)
