"""Where everything lives in a course directory.

`Course(root)` names every folder of one course directory; `COURSE` is this repository's. Tests grade in
a temporary copy of the course, so they never touch an instructor's gradebook or submissions.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each assignment's own material, one folder per assignment: source_text/<assignment>/ holds the instructor
# notebook's text twin (notebook.py, for review and diffs; it never goes into a course directory's source/), its
# catalogue of right and wrong answers with its demo mistakes (catalogue.py) and, optionally, its training
# benchmark (bench_training.py). The kit finds them there by these names.
MATERIAL = ROOT / "source_text"


@dataclass(frozen=True, order=True)
class Assignment:
    """One practical work: its nbgrader assignment id, and its one notebook, named after it."""
    name: str

    @property
    def notebook(self) -> str:
        """The notebook's file name: <assignment>.ipynb."""
        return f"{self.name}.ipynb"

    @property
    def notebook_id(self) -> str:
        return self.name

    @property
    def material(self) -> Path:
        return MATERIAL / self.name

    @property
    def text_twin(self) -> Path:
        return self.material / "notebook.py"

    def material_file(self, name: str) -> Path | None:
        """One of the assignment's own files (catalogue.py, bench_training.py), or None where it has none."""
        path = self.material / name
        return path if path.is_file() else None

    def __str__(self) -> str:
        return self.name


def assignments() -> list[Assignment]:
    """This repository's assignments: every folder of source_text/ with a text twin, in name order."""
    return sorted(Assignment(p.parent.name) for p in MATERIAL.glob("*/notebook.py"))


class UnknownAssignment(ValueError):
    pass


def assignment(name: str) -> Assignment:
    """The assignment called `name`, or an error that lists the known ones."""
    known = assignments()
    if Assignment(name) not in known:
        raise UnknownAssignment(f"no assignment {name!r}: the assignments are {', '.join(map(str, known)) or 'none'} "
                                "(one folder each in source_text/, with its notebook.py)")
    return Assignment(name)


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
    """A course directory, laid out as nbgrader lays it out: source/, release/, submitted/, autograded/, feedback/
    and solutions/ hold one folder per assignment (<step>/<assignment>/ or <step>/<student>/<assignment>/);
    reports/ and build/intake/ too (reports/<assignment>/, build/intake/<assignment>/), and reports/grades.csv
    covers every assignment."""
    root: Path

    def source_notebook(self, assignment: Assignment) -> Path:
        return self.root / "source" / assignment.name / assignment.notebook

    def release_notebook(self, assignment: Assignment) -> Path:
        return self.root / "release" / assignment.name / assignment.notebook

    def solution_notebook(self, assignment: Assignment) -> Path:
        return self.root / "solutions" / assignment.name / assignment.notebook

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
        """The reports that cover the whole course (grades.csv, benchmarks)."""
        return self.root / "reports"

    def reports_of(self, assignment: Assignment) -> Path:
        """One assignment's reports: grading.csv, grading.txt, the class report, the autograde log."""
        return self.reports / assignment.name

    def staging(self, assignment: Assignment) -> Path:
        """Copies of an assignment's gradable submissions, normalised, that nbgrader autogrades (laid out as
        submitted/ is: <student>/<assignment>/): submitted/ is never written."""
        return self.root / "build" / "intake" / assignment.name

    @property
    def gradebook(self) -> Path:
        """The SQLite gradebook's file, which is the gradebook unless $GRADEBOOK_URL names another one."""
        return self.root / "gradebook.db"

    @property
    def gradebook_url(self) -> str:
        return gradebook_url(self.root)

    def assignments(self) -> list[Assignment]:
        """The assignments this course directory has an instructor notebook for, in name order."""
        return sorted(Assignment(p.parent.name) for p in (self.root / "source").glob("*/*.ipynb")
                      if p.name == f"{p.parent.name}.ipynb")

    def handed_in(self) -> list[Assignment]:
        """The assignments with at least one folder in submitted/ (submitted/<student>/<assignment>/)."""
        return [a for a in self.assignments() if any(self.submitted.glob(f"*/{a.name}"))]


COURSE = Course(ROOT)


def submission_dir(step: Path, student: str, assignment: Assignment) -> Path:
    """One student's folder for an assignment in a step folder: <step>/<student>/<assignment>/."""
    return step / student / assignment.name


def copy_course(destination: Path, course: Course = COURSE) -> Course:
    """A new course directory at `destination` with this course's inputs (config, source/, release/, solutions/)
    and none of its grading state, for tests and benchmarks."""
    destination.mkdir(parents=True, exist_ok=True)
    for folder in ["source", "release", "solutions"]:
        shutil.copytree(course.root / folder, destination / folder)
    shutil.copy(course.root / "nbgrader_config.py", destination)
    return Course(destination)
