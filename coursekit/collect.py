"""Collects an LMS download (a Moodle-style zip, one folder per student) into submitted/, with `nbgrader zip_collect`.

Moodle's "Download all submissions" gives a zip of folders named `<Full Name>_<participant id>_assignsubmission_file_`,
each holding what the student uploaded, under whatever name their browser or Colab gave it. Two plugins, set in
nbgrader_config.py, do the work:
- `MoodleExtractorPlugin` extracts only the notebooks (`.ipynb`) in students' folders. Everything else a student
  uploaded (a timestamp.txt, other text, Python files, zips, which are never opened) is skipped, and the log names it.
- `MoodleCollectorPlugin` takes the student id from the folder (the name, as a slug: `ada-lovelace`; for a name with
  no Latin letter or digit, `participant-<participant id>`; checked by coursekit/student_ids.py), files the
  notebook under the released name when it is recognisably the same notebook ("Copy of pw2_transformers.ipynb",
  "pw2_transformers (1).ipynb", ...; any other notebook keeps its name, and intake reports it), and gives
  zip_collect the submission time, which zip_collect writes to submitted/<student>/<assignment>/timestamp.txt.

The submission time comes from the LMS, never from a file a student uploaded. Its sources, best first:
- the "Last modified (submission)" column of Moodle's grading worksheet, when `make collect ... WORKSHEET=<file>`
  gives it (copied to downloaded/<assignment>/grading_worksheet.csv), matched by its Identifier "Participant <id>"
  to the participant id of the student's folder in the zip;
- otherwise the notebook's entry time in Moodle's zip (`ZipInfo.date_time`, the upload's time as Moodle writes
  it), read from the zip itself, not from the extracted file: a last resort, and the note says so.
Both are written in the Moodle server's (or teacher's) zone without saying which: they get the course's LMS zone
(`c.Deadlines.lms_timezone` in nbgrader_config.py, see coursekit/deadlines.py), or stay without one when it is not set.
Because a timestamp.txt in a hand-in folder proves nothing (one put there by hand may be the student's own), collect
records each notebook it collected, by student and SHA-256 of its bytes, with its time and that time's source, in
submitted/.lms-submission-times.jsonl; intake gives a hand-in the time of this record (see `submission_time`), or
of nbgrader's own exchange (see intake), never a timestamp.txt that came with an upload.

`record_participants` then writes each student's name and Moodle participant id into the gradebook, so that
`make export` can fill in Moodle's grading worksheet.
"""

import hashlib
import json
import os
import re
import csv
import unicodedata
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePath, PurePosixPath
from typing import NamedTuple

from nbgrader.api import Gradebook
from nbgrader.plugins.zipcollect import ExtractorPlugin, FileNameCollectorPlugin

from . import deadlines, layout, student_ids

MOODLE_FOLDER = re.compile(r"^(?P<name>.+?)_(?P<participant>\d+)_assign(?:submission|feedback)_\w+?_?$")


def student_id(full_name: str) -> str:
    """A folder-safe id from a name: lower case, ASCII, words joined by dashes ("Élodie N'Diaye" -> "elodie-n-diaye")."""
    ascii_name = unicodedata.normalize("NFKD", full_name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def notebook_name(filename: str, assignment: layout.Assignment) -> str:
    """The assignment's notebook name for the copies a browser or Colab makes of it; any other name unchanged."""
    stem = PurePath(filename).stem
    cleaned = re.sub(r"^(copy[ _]of[ _])+", "", stem, flags=re.I)
    cleaned = re.sub(r"[ _]?\(\d+\)$", "", cleaned).strip().replace(" ", "_")
    return assignment.notebook if cleaned.lower() == assignment.notebook_id.lower() else PurePath(filename).name


def moodle_student(path: PurePath) -> dict[str, str] | None:
    """The student of a path inside a Moodle zip, from its `<Full Name>_<participant id>_assignsubmission_...`
    folder: student id, first and last name, and Moodle participant id; None outside such a folder."""
    folder = next((MOODLE_FOLDER.match(part) for part in path.parts if MOODLE_FOLDER.match(part)), None)
    if folder is None:
        return None
    first, _, last = folder["name"].partition(" ")
    # a name with no Latin letter or digit ("王芳") has no slug: the participant id names the student instead
    return {"student_id": student_id(folder["name"]) or f"participant-{folder['participant']}", "first_name": first,
            "last_name": last, "lms_user_id": folder["participant"]}


NOTEBOOK_SUFFIX = ".ipynb"
TIMES_RECORD = ".lms-submission-times.jsonl"  # in submitted/: a dot name, so never a student's folder


def _entry_parts(info: zipfile.ZipInfo) -> tuple[str, ...] | None:
    """The folders and name of a zip entry, or None if its name could write outside the extraction folder."""
    parts = PurePosixPath(info.filename).parts
    if not parts or info.filename.startswith("/") or "\\" in info.filename or any(p in ("..", ".") for p in parts):
        return None
    return parts


def _skip_reason(info: zipfile.ZipInfo) -> str:
    """Why a zip entry is not extracted, or "" for a notebook in a student's folder."""
    if _entry_parts(info) is None:
        return "its path leads out of the zip's folder"
    if not info.filename.endswith(NOTEBOOK_SUFFIX):
        return "not a notebook (only .ipynb files are collected)"
    if moodle_student(PurePosixPath(info.filename)) is None:
        return "not in a Moodle submission folder (<Name>_<id>_assignsubmission_file_)"
    return ""


def entry_time(info: zipfile.ZipInfo) -> datetime:
    """A zip entry's modification time (Moodle writes the upload's time there), naive, in the Moodle server's zone."""
    return datetime(*info.date_time)


class MoodleExtractorPlugin(ExtractorPlugin):
    """Extracts each zip in downloaded/<assignment>/archive/ to extracted/<zip name>/, notebooks in students' folders only."""

    def extract(self, archive_path: str, extracted_path: str) -> None:
        from .intake import MAX_MB  # intake imports this module
        most = MAX_MB * 2**20 + 1  # of one entry: past intake's limit, intake says the hand-in is too large to grade
        for path in sorted(Path(archive_path).iterdir()):
            if not (path.is_file() and zipfile.is_zipfile(path)):
                self.log.warning("Skipped %s: not a zip (make collect takes Moodle's \"Download all submissions\" zip)", path)
                continue
            self.log.info("Extracting the notebooks of %s", path)
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.is_dir():
                        continue
                    reason = _skip_reason(info)
                    if reason:
                        self.log.warning("Skipped %s in %s: %s", info.filename, path.name, reason)
                        continue
                    target = Path(extracted_path, path.name, *_entry_parts(info))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as source:
                        target.write_bytes(source.read(most))  # a zip bomb is extracted no further
                    stamp = entry_time(info).timestamp()
                    os.utime(target, (stamp, stamp))  # for a person looking; the collector reads the zip itself


class MoodleCollectorPlugin(FileNameCollectorPlugin):
    """Files each extracted notebook under its student, with its submission time, read from the zip's entry."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._entries: dict[str, dict[tuple[str, ...], zipfile.ZipInfo]] = {}  # zip name -> its entries, by path

    def collect(self, submitted_file: str):
        path = Path(submitted_file)
        if path.suffix not in self.valid_ext:
            self.log.warning("Skipped %s: only notebooks (.ipynb) are collected", path)
            return None
        info = self._zip_entry(path)
        if info is None:
            self.log.warning("Skipped %s: not a notebook of a zip in %s, so it has no submission time", path,
                             self.parent.archive_directory)
            return None
        student = moodle_student(PurePosixPath(info.filename))
        if student is None:
            self.log.warning("Skipped %s: not in a Moodle submission folder (<Name>_<id>_assignsubmission_file_)", path)
            return None
        wrong_id = student_ids.problem(student["student_id"])
        if wrong_id:  # never with student_id's slugs; checked where a name becomes a folder all the same
            self.log.warning("Skipped a notebook of participant %s: %s", student["lms_user_id"], wrong_id)
            return None
        time = entry_time(info)
        stamp = self._stamp(student["lms_user_id"], time)
        _record_time(self._submitted(), student["student_id"], hashlib.sha256(path.read_bytes()).hexdigest(), stamp)
        assignment = layout.Assignment(self.parent.coursedir.assignment_id)
        return {"student_id": student["student_id"], "file_id": notebook_name(path.name, assignment),
                "first_name": student["first_name"], "last_name": student["last_name"], "timestamp": time}

    def _stamp(self, participant: str, zip_time: datetime) -> "Stamp":
        """The submission time of a notebook: the worksheet's for its participant, else its time in the zip."""
        if not hasattr(self, "_worksheet"):
            tz = deadlines.Deadlines(config=self.parent.config).lms_timezone
            self._zone = deadlines.zone(tz) if tz else None
            path = Path(self.parent.coursedir.root, "downloaded", self.parent.coursedir.assignment_id, WORKSHEET)
            self._worksheet = worksheet_times(path, self.log) if path.is_file() else {}
            if not self._zone:
                self.log.warning("The LMS's times have no time zone: set c.Deadlines.lms_timezone in "
                                 "nbgrader_config.py (the Moodle server's zone, e.g. Europe/Paris); until then they "
                                 "are never compared with a due date")
        time, source = (self._worksheet[participant], SOURCE_WORKSHEET) if participant in self._worksheet \
            else (zip_time, SOURCE_ZIP)
        return Stamp(time.replace(tzinfo=self._zone) if self._zone else time, source)

    def _submitted(self) -> Path:
        return Path(self.parent.coursedir.root, self.parent.coursedir.submitted_directory)

    def _zip_entry(self, extracted: Path) -> zipfile.ZipInfo | None:
        """The entry of a zip in archive/ that `extracted` was extracted from (see MoodleExtractorPlugin), or None."""
        app = self.parent
        try:
            zip_name, *parts = extracted.relative_to(app._format_collect_path(app.extracted_directory)).parts
        except ValueError:
            return None
        if zip_name not in self._entries:
            archive = Path(app._format_collect_path(app.archive_directory), zip_name)
            self._entries[zip_name] = {}
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    self._entries[zip_name] = {_entry_parts(i): i for i in z.infolist() if _entry_parts(i) is not None}
        return self._entries[zip_name].get(tuple(parts))


SOURCE_WORKSHEET = "Moodle's grading worksheet"
SOURCE_ZIP = "the file's time in Moodle's zip, the last resort"
SOURCE_EXCHANGE = "nbgrader's exchange"
WORKSHEET = "grading_worksheet.csv"  # in downloaded/<assignment>/, when make collect is given one


class Stamp(NamedTuple):
    """A submission time (aware, or naive when the LMS's zone is unknown) and where it comes from."""
    time: datetime
    source: str


def _order(stamp: Stamp) -> datetime:
    return stamp.time if stamp.time.tzinfo else stamp.time.replace(tzinfo=timezone.utc)


MOODLE_DATE_FORMATS = ["%A, %d %B %Y, %I:%M %p", "%A, %d %B %Y, %H:%M", "%d %B %Y, %I:%M %p", "%d %B %Y, %H:%M"]


def moodle_date(text: str) -> datetime | None:
    """A date as Moodle's worksheet writes it ("Tuesday, 1 December 2026, 11:58 PM"), naive; None for "-" or ""."""
    text = " ".join(text.split())
    for form in MOODLE_DATE_FORMATS:
        try:
            return datetime.strptime(text, form)
        except ValueError:
            continue
    return None


def worksheet_times(path: Path, log=None) -> dict[str, datetime]:
    """Participant id -> "Last modified (submission)" of a Moodle grading worksheet (rows without a date are left out;
    a date that can't be read is logged and left out)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames or [], list(reader)
    column = "Last modified (submission)"
    if "Identifier" not in header or column not in header:
        if log:
            log.warning("%s has no Identifier and %r columns: not a Moodle grading worksheet, its times are not used",
                        path, column)
        return {}
    found = {}
    for row in rows:
        participant = re.search(r"(\d+)\s*$", row.get("Identifier") or "")
        text = (row.get(column) or "").strip()
        time = moodle_date(text) if text not in ("", "-") else None
        if participant and time:
            found[participant.group(1)] = time
        elif participant and text not in ("", "-") and log:
            log.warning("%s: %s: cannot read the date %r; the zip's time is used instead", path, row["Identifier"], text)
    return found


def _record_time(submitted: Path, student: str, sha256: str, stamp: Stamp) -> None:
    submitted.mkdir(parents=True, exist_ok=True)
    with (submitted / TIMES_RECORD).open("a", encoding="utf-8") as f:
        f.write(json.dumps({"student": student, "sha256": sha256, "time": stamp.time.isoformat(" "),
                            "source": stamp.source}) + "\n")


def submission_times(submitted: Path) -> dict[tuple[str, str], Stamp]:
    """What collect recorded in submitted/: (student, SHA-256 of a collected notebook) -> its time and source."""
    times: dict[tuple[str, str], Stamp] = {}
    record = submitted / TIMES_RECORD
    lines = record.read_text(encoding="utf-8").splitlines() if record.is_file() else []
    for line in lines:
        try:
            entry = json.loads(line)
            key = (entry["student"], entry["sha256"])
            stamp = Stamp(datetime.fromisoformat(entry["time"]), entry.get("source", SOURCE_ZIP))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        times[key] = stamp  # the latest collect's record wins
    return times


def submission_time(times: dict[tuple[str, str], Stamp], student: str, notebooks: list[bytes]) -> Stamp | None:
    """A hand-in's time in the LMS: the latest recorded time of the notebooks in its folder (their bytes, as intake
    read them) that collect collected for this student (nbgrader's rule too: a student's latest file), None when
    collect collected none of them."""
    keys = [(student, hashlib.sha256(data).hexdigest()) for data in notebooks]
    return max((times[key] for key in keys if key in times), default=None, key=_order)


def participants(archive: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    """The students of a Moodle zip: id -> first name, last name and Moodle participant id."""
    found = {}
    for name in archive.namelist():
        student = moodle_student(PurePath(name))
        if student is not None and not student_ids.problem(student["student_id"]):
            found[student.pop("student_id")] = student
    return found


def record_participants(course: layout.Course, assignment: layout.Assignment, db_url: str) -> dict[str, dict[str, str]]:
    """Writes the names and participant ids of the students in downloaded/<assignment>/archive/*.zip to the gradebook."""
    found = {}
    for path in sorted((course.root / "downloaded" / assignment.name / "archive").glob("*.zip")):
        with zipfile.ZipFile(path) as archive:
            found.update(participants(archive))
    with Gradebook(db_url) as gb:
        for student, details in found.items():
            gb.update_or_create_student(student, **details)
    return found
