"""Shared fixtures: a throwaway copy of the course, released, with the demo submissions graded once.

Grading runs in a temporary course directory, so the tests never touch the repository's gradebook,
submissions or reports.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from coursekit import grading, layout, samples

os.environ["HF_HUB_OFFLINE"] = "1"  # the Hugging Face Hub is never needed, and unreachable here


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the hash of its bytes (and so its content and name)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def course(tmp_path_factory) -> layout.Course:
    """A copy of the course directory in which release/ and solutions/ were generated again from source/."""
    course = layout.copy_course(tmp_path_factory.mktemp("course"))
    grading.nbgrader(course, "generate_assignment", layout.ASSIGNMENT, "--force")
    grading.nbgrader(course, "generate_solution", layout.ASSIGNMENT, "--force")
    return course


@dataclass
class GradedBatch:
    course: layout.Course
    results: dict[str, grading.Result]
    submitted_before: dict[str, str]


@pytest.fixture(scope="session")
def graded(course) -> GradedBatch:
    """The demo submissions, graded once with the same command as `make grade`, then feedback and export."""
    samples.write(course)
    before = tree_digest(course.submitted)
    results = grading.grade(course)
    grading.write_report(course, results)
    grading.nbgrader(course, "generate_feedback", layout.ASSIGNMENT, "--force")
    grading.nbgrader(course, "export", "--to", "reports/grades.csv")
    return GradedBatch(course, {r.student: r for r in results}, before)


@pytest.fixture(scope="session")
def source_nb(course) -> nbformat.NotebookNode:
    return nbformat.read(layout.COURSE.source_notebook, as_version=4)


@pytest.fixture(scope="session")
def release_nb() -> nbformat.NotebookNode:
    return nbformat.read(layout.COURSE.release_notebook, as_version=4)


def autograded_notebook(batch: GradedBatch, student: str) -> nbformat.NotebookNode:
    return nbformat.read(layout.submission_dir(batch.course.autograded, student) / layout.NOTEBOOK, as_version=4)
