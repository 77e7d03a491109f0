"""Collects an LMS download (a Moodle-style zip, one folder per student) into submitted/, with `nbgrader zip_collect`.

Moodle's "Download all submissions" gives a zip of folders named `<Full Name>_<participant id>_assignsubmission_file_`,
each holding what the student uploaded, under whatever name their browser or Colab gave it. This collector
plugin takes the student id from the folder (the name, as a slug: `ada-lovelace`) and files the notebook under
the released name when it is recognisably the same notebook ("Copy of pw2_transformers.ipynb",
"pw2_transformers (1).ipynb", ...). Any other file keeps its name; intake then reports it.

`record_participants` then writes each student's name and Moodle participant id into the gradebook, so that
`make export` can fill in Moodle's grading worksheet.
"""

import re
import unicodedata
import zipfile
from pathlib import PurePath

from nbgrader.api import Gradebook
from nbgrader.plugins.zipcollect import FileNameCollectorPlugin

from . import layout

MOODLE_FOLDER = re.compile(r"^(?P<name>.+?)_(?P<participant>\d+)_assign(?:submission|feedback)_\w+?_?$")


def student_id(full_name: str) -> str:
    """A folder-safe id from a name: lower case, ASCII, words joined by dashes ("Élodie N'Diaye" -> "elodie-n-diaye")."""
    ascii_name = unicodedata.normalize("NFKD", full_name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def notebook_name(filename: str) -> str:
    """The released notebook's name for the copies a browser or Colab makes of it; any other name unchanged."""
    stem = PurePath(filename).stem
    cleaned = re.sub(r"^(copy[ _]of[ _])+", "", stem, flags=re.I)
    cleaned = re.sub(r"[ _]?\(\d+\)$", "", cleaned).strip().replace(" ", "_")
    return layout.NOTEBOOK if cleaned.lower() == layout.NOTEBOOK_ID else PurePath(filename).name


def moodle_student(path: PurePath) -> dict[str, str] | None:
    """The student of a path inside a Moodle zip, from its `<Full Name>_<participant id>_assignsubmission_...`
    folder: student id, first and last name, and Moodle participant id; None outside such a folder."""
    folder = next((MOODLE_FOLDER.match(part) for part in path.parts if MOODLE_FOLDER.match(part)), None)
    if folder is None:
        return None
    first, _, last = folder["name"].partition(" ")
    return {"student_id": student_id(folder["name"]), "first_name": first, "last_name": last,
            "lms_user_id": folder["participant"]}


class MoodleCollectorPlugin(FileNameCollectorPlugin):
    """nbgrader zip_collect plugin for Moodle's "Download all submissions" zip (set in nbgrader_config.py)."""

    def collect(self, submitted_file: str):
        path = PurePath(submitted_file)
        student = moodle_student(path)
        if student is None:
            self.log.warning("Skipped %s: not in a Moodle submission folder (<Name>_<id>_assignsubmission_file_)", path)
            return None
        return {"student_id": student["student_id"], "file_id": notebook_name(path.name),
                "first_name": student["first_name"], "last_name": student["last_name"]}


def participants(archive: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    """The students of a Moodle zip: id -> first name, last name and Moodle participant id."""
    found = {}
    for name in archive.namelist():
        student = moodle_student(PurePath(name))
        if student is not None:
            found[student.pop("student_id")] = student
    return found


def record_participants(course: layout.Course, db_url: str) -> dict[str, dict[str, str]]:
    """Writes the names and participant ids of the students in downloaded/<assignment>/archive/*.zip to the gradebook."""
    found = {}
    for path in sorted((course.root / "downloaded" / layout.ASSIGNMENT / "archive").glob("*.zip")):
        with zipfile.ZipFile(path) as archive:
            found.update(participants(archive))
    with Gradebook(db_url) as gb:
        for student, details in found.items():
            gb.update_or_create_student(student, **details)
    return found
