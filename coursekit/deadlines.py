"""Due dates, extensions and the late penalty, with nbgrader's gradebook as the one place that holds them.

- The due date of an assignment is nbgrader's `Assignment.duedate` in the gradebook, set with `make due
  ASSIGNMENT=<name> DUE="2026-12-15 23:59 Europe/Paris"` (`set_due`). Every time given to coursekit carries its
  time zone, as an IANA name or an offset (`parse_time`); a time without one is refused, never guessed. nbgrader
  stores UTC, naive: everything here is computed in UTC, so a daylight-saving change counts as the hours it is.
- Extensions: extensions/<assignment>.csv, columns student,due,reason, one row per student (the new due date, with
  its time zone). `make grade` reads and checks the whole file before anything is graded (`read_extensions`: a
  malformed row, a date without a time zone, an unknown student is one error naming the file and line, and nothing
  is graded), then writes it to the gradebook (`apply_extensions`: nbgrader's `grant_extension`; a student no longer
  in the file loses their extension), where nbgrader's `total_seconds_late` counts from the extended due date.
- The penalty is one rule, nbgrader's late-submission plugin `LatePenalty` (set in nbgrader_config.py, so nbgrader's
  AssignLatePenalties writes the penalty to the gradebook while it autogrades): `percent_per_day` of the earned points
  for each started day late (one minute late is one started day), for at most `max_days` days; later than that, all
  of them. `late_text` says it in the same words in grading.csv, grading.txt, the class report, the Moodle worksheet
  and the student's feedback page: "submitted 2 days 3 hours late: −30% (−4.5 points)".
- LMS times without a time zone (Moodle's zip entry times, its grading worksheet's dates: the server's, or the
  teacher's, zone) get the course's LMS zone, `c.Deadlines.lms_timezone` in nbgrader_config.py. Without it such a
  time stays without a zone: fine while the assignment has no due date; with one, grading stops and says so.
"""

import csv
import math
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import LateSubmissionPlugin
from sqlalchemy.exc import SAWarning
from traitlets import Float, Int, Unicode
from traitlets.config import Config, Configurable

from . import layout


class DeadlineError(ValueError):
    """Bad input about dates (a due date, an extensions file, a time zone): nothing was changed."""


ACCEPTED = ('"2026-12-15 23:59 Europe/Paris" (a time zone name), "2026-12-15T23:59+01:00" (an offset) or '
            '"2026-12-15T22:59Z" (UTC)')
_ZONE_NAME = re.compile(r"^(?P<time>\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
                        r"\s+(?P<zone>[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)*)$")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` ("Europe/Paris", "UTC")."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise DeadlineError(f"unknown time zone {name!r} (give an IANA name such as Europe/Paris or UTC)") from error


def parse_time(text: str) -> datetime:
    """A date and time with its time zone, as an aware datetime in UTC. Accepted: see ACCEPTED; a time without a
    zone is refused (it would mean a different instant on every machine)."""
    text = text.strip()
    named = _ZONE_NAME.match(text)
    try:
        if named:
            local = datetime.fromisoformat(named["time"])
        else:
            local = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as error:
        raise DeadlineError(f"{text!r} is not a date and time: write it as {ACCEPTED}") from error
    if named and local.tzinfo is None:
        try:
            local = local.replace(tzinfo=zone(named["zone"]))
        except DeadlineError as error:
            raise DeadlineError(f"{text!r}: {error}") from None
    if local.tzinfo is None:
        raise DeadlineError(f"{text!r} has no time zone: write it as {ACCEPTED}")
    return local.astimezone(timezone.utc)


def to_gradebook(moment: datetime) -> datetime:
    """nbgrader's form of a time: naive, in UTC."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def from_gradebook(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=timezone.utc)


def shown(moment: datetime, tz: str = "") -> str:
    """A time for people: in the course's LMS zone when one is set, else UTC, with the zone's name."""
    if moment.tzinfo is None:
        return f"{moment:%Y-%m-%d %H:%M} (no time zone)"
    local = moment.astimezone(zone(tz)) if tz else moment.astimezone(timezone.utc)
    return f"{local:%Y-%m-%d %H:%M} {tz or 'UTC'}"


class Deadlines(Configurable):
    """Course settings about times (c.Deadlines.* in nbgrader_config.py)."""
    lms_timezone = Unicode("", help="IANA time zone of the LMS's times that carry none (Moodle's zip entry times and "
                           "its grading worksheet's dates: the Moodle server's or teacher's zone), e.g. Europe/Paris. "
                           "Empty: unknown, and such a time is never compared with a due date.").tag(config=True)


class LatePenalty(LateSubmissionPlugin):
    """nbgrader's late-submission plugin for this course: `percent_per_day` of the earned points per started day late,
    for at most `max_days` days; later than that, all the points. nbgrader gives it the seconds late past the due date
    plus the student's extension, and stores what it returns in the gradebook."""
    percent_per_day = Float(10.0, help="percent of the earned points taken per started day late").tag(config=True)
    max_days = Int(5, help="started days late that still earn points; later, the penalty is every point").tag(config=True)

    def started_days(self, seconds_late: float) -> int:
        return math.ceil(seconds_late / 86400) if seconds_late > 0 else 0

    def fraction(self, seconds_late: float) -> float:
        """The share of the earned points taken for a hand-in `seconds_late` late."""
        days = self.started_days(seconds_late)
        if days > self.max_days:
            return 1.0
        return min(1.0, days * self.percent_per_day / 100)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        penalty = (score or 0.0) * self.fraction(total_seconds_late)
        self.log.info("%s: %s", student_id, late_text(total_seconds_late, penalty, self))
        return penalty


@lru_cache(maxsize=8)
def _settings(root: str) -> tuple[LatePenalty, Deadlines, object]:
    from .autograde import load_config  # autograde imports sandbox and workers: only when asked
    config = load_config(Path(root)) if (Path(root) / "nbgrader_config.py").is_file() else Config()  # nbgrader's defaults
    return LatePenalty(config=config), Deadlines(config=config), config


def exchange_inbound(course: layout.Course) -> Path | None:
    """The inbound folder of the course in nbgrader's exchange (c.Exchange.root, c.CourseDirectory.course_id)."""
    config = _settings(str(course.root))[2]
    root, course_id = config.Exchange.get("root"), config.CourseDirectory.get("course_id")
    return Path(root, course_id, "inbound") if root and course_id else None


def policy(course: layout.Course) -> LatePenalty:
    """The course's late penalty, as nbgrader_config.py configures it."""
    return _settings(str(course.root))[0]


def lms_timezone(course: layout.Course) -> str:
    """The course's zone for LMS times without one ("" when not set), checked."""
    name = _settings(str(course.root))[1].lms_timezone
    if name:
        zone(name)
    return name


def duration(seconds: float) -> str:
    """'2 days 3 hours', '1 minute', '5 hours 2 minutes': the two largest units, rounded up to the minute."""
    minutes = max(1, math.ceil(seconds / 60))
    parts = [(minutes // 1440, "day"), (minutes // 60 % 24, "hour"), (minutes % 60, "minute")]
    words = [f"{n} {unit}{'s' * (n > 1)}" for n, unit in parts if n]
    return " ".join(words[:2])


def late_text(seconds_late: float, penalty: float | None, rule: LatePenalty) -> str:
    """How late a hand-in was and what it cost, the same words everywhere; "" for one on time."""
    if seconds_late <= 0:
        return ""
    beyond = f", more than {rule.max_days} days" if rule.started_days(seconds_late) > rule.max_days else ""
    points = f" ({_minus(penalty or 0)} point{'s' * (penalty != 1)})" if penalty is not None else ""
    return f"submitted {duration(seconds_late)} late{beyond}: {_minus(rule.fraction(seconds_late) * 100)}%{points}"


def _minus(value: float) -> str:
    return f"−{value:g}" if value else "0"


def feedback_late(grades: dict) -> str:
    """The late line of a student's feedback page, from the gradebook that GetGrades read (`grades`: its resources),
    or "" when on time. nbgrader runs the feedback in the course root."""
    late = float(grades.get("late_penalty") or 0)
    try:
        with Gradebook(grades["db_url"]) as gb:
            seconds = gb.find_submission(grades["assignment"], grades["student"]).total_seconds_late
    except (KeyError, MissingEntry):
        seconds = 0
    if seconds > 0:
        return late_text(seconds, late, policy(layout.Course(Path.cwd())))
    return f"after a late penalty of {late:g} points" if late else ""  # one given by hand in the gradebook


# The due date.

def due_date(gb: Gradebook, assignment: layout.Assignment) -> datetime | None:
    try:
        return from_gradebook(gb.find_assignment(assignment.name).duedate)
    except MissingEntry:
        return None


def due_of(course: layout.Course, assignment: layout.Assignment) -> datetime | None:
    """The due date of `assignment` in the course's gradebook (aware, UTC), or None (also when there is no gradebook
    yet: a SQLite one is not created for this)."""
    if course.gradebook_url == f"sqlite:///{course.gradebook}" and not course.gradebook.is_file():
        return None
    with Gradebook(course.gradebook_url) as gb:
        return due_date(gb, assignment)


def set_due(db_url: str, assignment: layout.Assignment, due: datetime) -> None:
    with Gradebook(db_url) as gb:
        gb.update_or_create_assignment(assignment.name, duedate=to_gradebook(due))


# Extensions.

EXTENSION_COLUMNS = ["student", "due", "reason"]


@dataclass(frozen=True)
class Extension:
    student: str
    due: datetime  # aware, UTC
    reason: str


def extensions_path(course: layout.Course, assignment: layout.Assignment) -> Path:
    return course.root / "extensions" / f"{assignment.name}.csv"


def read_extensions(course: layout.Course, assignment: layout.Assignment, known: set[str],
                    due: datetime | None) -> dict[str, Extension]:
    """extensions/<assignment>.csv, checked whole: any problem is a DeadlineError naming the file and line."""
    path = extensions_path(course, assignment)
    if not path.is_file():
        return {}
    where = path.relative_to(course.root)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DeadlineError(f"{where}: not a CSV file ({error})") from error
    if not rows or [c.strip().lower() for c in rows[0]] != EXTENSION_COLUMNS:
        raise DeadlineError(f"{where}, line 1: the header must be {','.join(EXTENSION_COLUMNS)} (it is "
                            f"{','.join(rows[0]) if rows else 'empty'})")
    found: dict[str, Extension] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise DeadlineError(f"{where}, line {line}: expected 3 columns (student,due,reason), found {len(row)}")
        student, text, reason = (cell.strip() for cell in row)
        if student not in known:
            raise DeadlineError(f"{where}, line {line}: unknown student {student!r} (no hand-in for {assignment} and "
                                "not in the gradebook)")
        if student in found:
            raise DeadlineError(f"{where}, line {line}: a second extension for {student}")
        try:
            new_due = parse_time(text)
        except DeadlineError as error:
            raise DeadlineError(f"{where}, line {line}: {error}") from None
        if due is None:
            raise DeadlineError(f"{where}: extensions, but {assignment} has no due date: set it first "
                                f"(make due ASSIGNMENT={assignment} DUE=\"2026-12-15 23:59 Europe/Paris\")")
        if new_due < due:
            raise DeadlineError(f"{where}, line {line}: {student}'s new due date {shown(new_due)} is before the "
                                f"assignment's, {shown(due)}")
        found[student] = Extension(student, new_due, reason)
    return found


def apply_extensions(db_url: str, assignment: layout.Assignment, found: dict[str, Extension]) -> None:
    """Writes the extensions to the gradebook (nbgrader's grant_extension), and removes those no longer in the file."""
    with Gradebook(db_url) as gb, warnings.catch_warnings():
        # nbgrader's add_submission makes SQLAlchemy warn about its own autoflush (nbgrader autograde does the same)
        warnings.simplefilter("ignore", SAWarning)
        due = due_date(gb, assignment)
        students = {s.student.id for s in gb.assignment_submissions(assignment.name)} | set(found)
        for student in sorted(students):
            gb.update_or_create_student(student)
            gb.update_or_create_submission(assignment.name, student)
            if student in found:
                gb.grant_extension(assignment.name, student, minutes=(found[student].due - due) / timedelta(minutes=1))
            else:
                gb.grant_extension(assignment.name, student)  # no time given: nbgrader removes the extension


def extension_note(extension: Extension, tz: str = "") -> str:
    return f"extension to {shown(extension.due, tz)}" + (f" ({extension.reason})" if extension.reason else "")


def check_before_grading(course: layout.Course, assignment: layout.Assignment) -> dict[str, Extension]:
    """The extensions of `assignment`, read and checked whole before `make grade` grades anything (DeadlineError)."""
    from . import intake  # intake imports collect, which imports this module
    with Gradebook(course.gradebook_url) as gb:
        due = due_date(gb, assignment)
        known = {s.id for s in gb.students} | set(intake.students(course.submitted, assignment))
    lms_timezone(course)  # a misspelt zone is an error now, not halfway through
    return read_extensions(course, assignment, known, due)


def notes(course: layout.Course, result, extensions: dict[str, Extension]) -> list[str]:
    """What grading.csv's note says of a student's deadline: their extension, and how late the hand-in was."""
    found = [extension_note(extensions[result.student], lms_timezone(course))] if result.student in extensions else []
    if result.status == "graded" and result.seconds_late > 0:
        found.append(late_text(result.seconds_late, result.late_penalty, policy(course)))
    return found
