"""Where everything lives in a course directory.

`Course(root)` names every folder of one course directory; `COURSE` is this repository's. Tests grade in
a temporary copy of the course, so they never touch an instructor's gradebook or submissions.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "pw2_transformers"
NOTEBOOK_ID = ASSIGNMENT  # one notebook, named after the assignment
NOTEBOOK = f"{NOTEBOOK_ID}.ipynb"

# The instructor notebook's text twin, for review and diffs: it never goes into a course directory's source/.
SOURCE_TEXT = ROOT / "source_text" / f"{ASSIGNMENT}.py"

# The gradebook: SQLite gradebook.db at the course root unless this environment variable names another database
# (any SQLAlchemy URL, e.g. postgresql://grader@db.example.org/transformers). nbgrader_config.py and coursekit
# both ask gradebook_url(), so nbgrader's commands, the formgrader and coursekit always use the same gradebook.
GRADEBOOK_URL = "GRADEBOOK_URL"


def gradebook_url(root: Path | str) -> str:
    """The SQLAlchemy URL of the gradebook of the course at `root`: $GRADEBOOK_URL, or SQLite root/gradebook.db.

    A plain postgresql:// (or postgres://) URL gets the psycopg2 driver, the one requirements.txt installs:
    SQLAlchemy 2.1 would otherwise look for psycopg 3."""
    url = os.environ.get(GRADEBOOK_URL, "").strip()
    if not url:
        return f"sqlite:///{Path(root) / 'gradebook.db'}"
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme in ("postgresql", "postgres") else url


@dataclass(frozen=True)
class Course:
    root: Path

    @property
    def source_notebook(self) -> Path:
        return self.root / "source" / ASSIGNMENT / NOTEBOOK

    @property
    def release_notebook(self) -> Path:
        return self.root / "release" / ASSIGNMENT / NOTEBOOK

    @property
    def solution_notebook(self) -> Path:
        return self.root / "solutions" / ASSIGNMENT / NOTEBOOK

    @property
    def submitted(self) -> Path:
        return self.root / "submitted"

    @property
    def autograded(self) -> Path:
        return self.root / "autograded"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def staging(self) -> Path:
        """Copies of the gradable submissions, normalised, that nbgrader autogrades: submitted/ is never written."""
        return self.root / "build" / "intake"

    @property
    def gradebook(self) -> Path:
        """The SQLite gradebook's file, which is the gradebook unless $GRADEBOOK_URL names another one."""
        return self.root / "gradebook.db"

    @property
    def gradebook_url(self) -> str:
        return gradebook_url(self.root)


COURSE = Course(ROOT)


def submission_dir(step: Path, student: str) -> Path:
    """One student's folder for the assignment in a step folder: <step>/<student>/<assignment>/."""
    return step / student / ASSIGNMENT


def copy_course(destination: Path, course: Course = COURSE) -> Course:
    """A new course directory at `destination` with this course's inputs (config, source/, release/, solutions/)
    and none of its grading state, for tests and benchmarks."""
    destination.mkdir(parents=True, exist_ok=True)
    for folder in ["source", "release", "solutions"]:
        shutil.copytree(course.root / folder, destination / folder)
    shutil.copy(course.root / "nbgrader_config.py", destination)
    return Course(destination)
