"""Grades a catalogue of known answers, right and wrong, through nbgrader, and tabulates what the checks catch.

The catalogue itself is code, in tests/catalogue.py: each entry is the source of one or more exercise
cells. Every wrong entry is graded as its own submission (the instructor's solution with that one
exercise replaced), so the points it loses can be pinned on exercises; correct entries are grouped,
at most one per exercise in a submission. `make catalogue` prints the table for instructors.
"""

import importlib.util
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import answers, checks, grading, layout

CATALOGUE = layout.ROOT / "tests" / "catalogue.py"


@dataclass(frozen=True)
class Entry:
    name: str
    cells: dict[str, str]   # exercise grade_id -> the source of that exercise cell
    correct: bool
    expect: str = ""        # for a wrong entry: words its failure message must contain


@dataclass
class Outcome:
    entry: Entry
    student: str
    lost: dict[str, float] = field(default_factory=dict)           # exercise -> points lost
    failures: dict[str, list[checks.Check]] = field(default_factory=dict)  # exercise -> failed checks
    status: str = ""


def load(path: Path = CATALOGUE) -> list[Entry]:
    spec = importlib.util.spec_from_file_location("catalogue", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ENTRIES


def student_id(entry: Entry) -> str:
    """A folder-safe student id for a wrong entry: wrong-<its name in lower case, with dashes>."""
    return "wrong-" + re.sub(r"[^a-z0-9]+", "-", entry.name.lower()).strip("-")


def submissions(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Student id -> the entries graded together in that submission."""
    result = {student_id(e): [e] for e in entries if not e.correct}
    if len(result) != sum(not e.correct for e in entries):
        raise ValueError("two wrong entries have the same name")
    groups: list[list[Entry]] = []
    for entry in (e for e in entries if e.correct):
        group = next((g for g in groups if not set(entry.cells) & {x for e in g for x in e.cells}), None)
        if group is None:
            groups.append(group := [])
        group.append(entry)
    result.update({f"correct-{i + 1}": group for i, group in enumerate(groups)})
    return result


def write(course: layout.Course, batch: dict[str, list[Entry]]) -> None:
    source = nbformat.read(course.source_notebook, as_version=4)
    release = nbformat.read(course.release_notebook, as_version=4)
    solution = answers.solution_answers(source)
    for student, group in batch.items():
        cells = {grade_id: code for entry in group for grade_id, code in entry.cells.items()}
        folder = layout.submission_dir(course.submitted, student)
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(answers.fill(release, {**solution, **cells}), folder / layout.NOTEBOOK)


def outcomes(course: layout.Course, batch: dict[str, list[Entry]], results: list[grading.Result]) -> list[Outcome]:
    """What each entry cost, from the graded batch."""
    full = {answers.exercise_of(t): p for t, p in grading.test_points(course).items()}
    by_student = {r.student: r for r in results}
    found = []
    for student, group in batch.items():
        result = by_student[student]
        path = layout.submission_dir(course.autograded, student) / layout.NOTEBOOK
        notebook = nbformat.read(path, as_version=4) if path.is_file() else nbformat.v4.new_notebook()  # not graded
        printed = {answers.exercise_of(t): [c for c in cs if not c.passed] for t, cs in checks.by_test_cell(notebook).items()}
        for entry in group:
            found.append(Outcome(entry, student, status=result.status,
                                 lost={e: full[e] - result.exercises.get(e, 0.0) for e in full
                                       if full[e] - result.exercises.get(e, 0.0) > 0},
                                 failures={e: fs for e, fs in printed.items() if fs}))
    return found


def grade(entries: list[Entry], students: list[str] | None = None) -> list[Outcome]:
    """Grades the entries (or only the given submissions of them) in a throwaway course directory."""
    batch = submissions(entries)
    if students is not None:
        batch = {s: batch[s] for s in students}
    with tempfile.TemporaryDirectory() as tmp:
        course = layout.copy_course(Path(tmp) / "course")
        grading.nbgrader(course, "generate_assignment", layout.ASSIGNMENT, "--force")
        write(course, batch)
        return outcomes(course, batch, grading.grade(course))


def table(found: list[Outcome]) -> str:
    """Per entry: wrong or correct, its name, the points it lost per exercise, then each failed check's message."""
    lines = []
    for o in sorted(found, key=lambda o: (o.entry.correct, o.entry.name)):
        lost = ", ".join(f"{e} -{p:g}" for e, p in o.lost.items()) or "full marks"
        lines.append(f"{'correct' if o.entry.correct else 'wrong  '}  {o.entry.name}: {lost}")
        lines += [f"           ✗ {c.description} (-{c.points:g}): {c.reason}" for fs in o.failures.values() for c in fs]
    return "\n".join(lines)
