"""Grades a catalogue of known answers, right and wrong, through nbgrader, and tabulates what the checks catch.

The catalogue itself is code, in tests/catalogue.py: each entry is the source of one or more exercise
cells. Every wrong entry is graded as its own submission (the instructor's solution with that one
exercise replaced), so the points it loses can be pinned on exercises; correct entries are grouped,
at most one per exercise in a submission. Every entry is also run as a student runs it, before handing in:
the release notebook's public checks, in local mode (`public_failures`). `make catalogue` prints the table for
instructors, with what the public checks said and what grading took away.
"""

import contextlib
import functools
import importlib.util
import io
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import answers, checks, grading, layout, scoring

CATALOGUE = layout.ROOT / "tests" / "catalogue.py"


@dataclass(frozen=True)
class Entry:
    name: str
    cells: dict[str, str]   # exercise grade_id -> the source of that exercise cell
    correct: bool
    expect: str = ""        # for a wrong entry: words its failure message must contain
    hidden_only: str = ""   # for a wrong entry no public check can flag: why only a hidden input reveals it


@dataclass
class Outcome:
    entry: Entry
    student: str
    lost: dict[str, float] = field(default_factory=dict)           # exercise -> points lost
    failures: dict[str, list[checks.Check]] = field(default_factory=dict)  # exercise -> failed checks
    status: str = ""
    public: dict[str, list[checks.Check]] = field(default_factory=dict)    # exercise -> failed public checks


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
        found = outcomes(course, batch, grading.grade(course))
        release = nbformat.read(course.release_notebook, as_version=4)
    for outcome in found:
        outcome.public = {e: fs for e, fs in public_failures(outcome.entry.cells, release).items() if fs}
    return found


def public_failures(cells: dict[str, str], release: nbformat.NotebookNode) -> dict[str, list[checks.Check]]:
    """The public checks that fail, per exercise, when a student fills the release with the instructor's answers
    and `cells`, then runs every check cell (local mode, as in Colab; these answers are the catalogue's own code, so
    they run here, in a namespace of their own, without a kernel)."""
    namespace = scoring.notebook_namespace(release, "__main__", grading=False)
    failed = {}
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            code = cells.get(meta["grade_id"], _solutions()[meta["grade_id"]])
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
                exec(compile(code, f"<answer: {meta['grade_id']}>", "exec"), namespace)
        elif meta.get("grade") and meta.get("points"):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed), contextlib.suppress(Exception):
                exec(compile(cell.source, f"<release: {meta['grade_id']}>", "exec"), namespace)
            failed[answers.exercise_of(meta["grade_id"])] = [c for c in checks.parse(printed.getvalue()) if not c.passed]
    return failed


@functools.cache
def _solutions() -> dict[str, str]:
    return answers.solution_answers(nbformat.read(layout.COURSE.source_notebook, as_version=4))


def table(found: list[Outcome]) -> str:
    """Per entry: wrong or correct, its name, whether the public checks flag it before hand-in (their exercises), the
    points grading took away per exercise, then each failed check's message."""
    lines = [f"{'':7}  {'public':<28}  {'graded':<28}  entry"]
    for o in sorted(found, key=lambda o: (o.entry.correct, o.entry.name)):
        public = ", ".join(o.public) or "-"
        lost = ", ".join(f"{e} -{p:g}" for e, p in o.lost.items()) or "full marks"
        lines.append(f"{'correct' if o.entry.correct else 'wrong  '}  {public:<28}  {lost:<28}  {o.entry.name}")
        lines += [f"           ✗ {c.description} (-{c.points:g}): {c.reason}" for fs in o.failures.values() for c in fs]
    wrong = [o for o in found if not o.entry.correct]
    flagged = sum(bool(set(o.public) & set(o.entry.cells)) for o in wrong)
    lines.append(f"public checks flag {flagged} of {len(wrong)} wrong answers in their own exercise; "
                 f"{sum(bool(o.public) for o in found if o.entry.correct)} correct answers flagged")
    return "\n".join(lines)
