"""Grades a catalogue of known answers, right and wrong, through nbgrader, and tabulates what the checks catch.

Each assignment's catalogue is code, in source_text/<assignment>/catalogue.py (see material.py): each entry
is the source of one or more exercise cells. Every wrong entry is graded as its own submission (the
instructor's solution with that one exercise replaced), so the points it loses can be pinned on exercises;
correct entries are grouped, at most one per exercise in a submission. Every entry is also run as a student runs
it, before handing in: the release notebook's public checks, in local mode (`public_failures`). `make catalogue`
prints the table for instructors, with what the public checks said and what grading took away.
"""

import contextlib
import io
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import answers, checks, grading, layout, material, results, scoring


@dataclass(frozen=True)
class Entry:
    name: str
    cells: dict[str, str]   # exercise grade_id -> the source of that exercise cell
    correct: bool
    expect: str = ""        # for a wrong entry: words its failure message must contain
    hidden_only: str = ""   # for a wrong entry no public check can flag: why only a hidden input reveals it


@dataclass
class EntryOutcome:
    entry: Entry
    student: str
    lost: dict[str, float] = field(default_factory=dict)           # exercise -> points lost
    failures: dict[str, list[checks.Check]] = field(default_factory=dict)  # exercise -> failed checks
    status: str = ""
    public: dict[str, list[checks.Check]] = field(default_factory=dict)    # exercise -> failed public checks


def wrong(name: str, exercise: str, code: str, expect: str, hidden_only: str = "") -> Entry:
    """A wrong answer to one exercise; `hidden_only` says why no public check can flag it, when that is so."""
    return Entry(name, {exercise: code}, correct=False, expect=expect, hidden_only=hidden_only)


def correct(name: str, exercise: str, code: str) -> Entry:
    """A correct answer to one exercise, written differently from the instructor's."""
    return Entry(name, {exercise: code}, correct=True)


def load(assignment: layout.Assignment) -> list[Entry]:
    """The assignment's catalogue (ENTRIES of source_text/<assignment>/catalogue.py)."""
    return material.module(assignment, "catalogue").ENTRIES


def demo_mistakes(assignment: layout.Assignment) -> list[Entry]:
    """The entries the demo's "mistakes" hand-in makes (DEMO_MISTAKES of the assignment's catalogue)."""
    entries = {e.name: e for e in load(assignment)}
    return [entries[name] for name in material.module(assignment, "catalogue").DEMO_MISTAKES]


def with_catalogue(course: layout.Course = layout.COURSE) -> list[layout.Assignment]:
    """The course's assignments that have a catalogue."""
    return [a for a in course.assignments() if material.has(a, "catalogue")]


def submission_id(entry: Entry) -> str:
    """A folder-safe student id for a wrong entry: wrong-<its name in lower case, with dashes>."""
    return "wrong-" + re.sub(r"[^a-z0-9]+", "-", entry.name.lower()).strip("-")


def _packed(entries: list[Entry]) -> list[list[Entry]]:
    """The entries in as few groups as possible, no two entries of a group sharing an exercise."""
    groups: list[list[Entry]] = []
    for entry in entries:
        group = next((g for g in groups if not set(entry.cells) & {x for e in g for x in e.cells}), None)
        if group is None:
            groups.append(group := [])
        group.append(entry)
    return groups


def submissions(entries: list[Entry], pack_wrong: bool = False) -> dict[str, list[Entry]]:
    """Student id -> the entries graded together in that submission.

    Correct entries are packed, at most one per exercise in a submission. Wrong ones are graded alone (the points
    they lose, in any exercise, are theirs), or packed too with `pack_wrong`: for an assignment whose checks of one
    exercise never call another exercise's code (its catalogue says INDEPENDENT_EXERCISES = True), which saves
    grading time. A packed entry is still charged the points lost in any exercise of the submission that is not
    another entry's."""
    wrong = [e for e in entries if not e.correct]
    if len({submission_id(e) for e in wrong}) != len(wrong):
        raise ValueError("two wrong entries have the same name")
    if pack_wrong:
        result = {f"wrong-{i + 1}": group for i, group in enumerate(_packed(wrong))}
    else:
        result = {submission_id(e): [e] for e in wrong}
    result.update({f"correct-{i + 1}": group for i, group in enumerate(_packed([e for e in entries if e.correct]))})
    return result


def packs_wrong(assignment: layout.Assignment) -> bool:
    """Whether the assignment's catalogue says its exercises are graded independently (INDEPENDENT_EXERCISES)."""
    return bool(getattr(material.module(assignment, "catalogue"), "INDEPENDENT_EXERCISES", False))


def batch_of(assignment: layout.Assignment, entries: list[Entry]) -> dict[str, list[Entry]]:
    """The submissions that grade `entries`, packed as the assignment's catalogue allows."""
    return submissions(entries, pack_wrong=packs_wrong(assignment))


def write(course: layout.Course, assignment: layout.Assignment, batch: dict[str, list[Entry]]) -> None:
    source = nbformat.read(course.source_notebook(assignment), as_version=4)
    release = nbformat.read(course.release_notebook(assignment), as_version=4)
    solution = answers.solution_answers(source)
    for student, group in batch.items():
        cells = {grade_id: code for entry in group for grade_id, code in entry.cells.items()}
        folder = layout.submission_dir(course.submitted, student, assignment)
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(answers.fill(release, {**solution, **cells}), folder / assignment.notebook)


def outcomes(course: layout.Course, assignment: layout.Assignment, batch: dict[str, list[Entry]],
             graded: list[results.Result]) -> list[EntryOutcome]:
    """What each entry cost, from the graded batch."""
    full = {answers.exercise_of(t): p for t, p in results.test_points(course, assignment).items()}
    by_student = {r.student: r for r in graded}
    found = []
    for student, group in batch.items():
        result = by_student[student]
        path = layout.submission_dir(course.autograded, student, assignment) / assignment.notebook
        notebook = nbformat.read(path, as_version=4) if path.is_file() else nbformat.v4.new_notebook()  # not graded
        printed = {answers.exercise_of(t): [c for c in cs if not c.passed] for t, cs in checks.by_test_cell(notebook).items()}
        lost = {e: full[e] - result.exercises.get(e, 0.0) for e in full if full[e] - result.exercises.get(e, 0.0) > 0}
        for entry in group:
            others = {x for e in group if e is not entry for x in e.cells}  # charged to the other entries
            found.append(EntryOutcome(entry, student, status=result.status,
                                      lost={e: p for e, p in lost.items() if e not in others},
                                      failures={e: fs for e, fs in printed.items() if fs and e not in others}))
    return found


def grade_entries(assignment: layout.Assignment, entries: list[Entry], students: list[str] | None = None
                  ) -> list[EntryOutcome]:
    """Grades the entries (or only the given submissions of them) in a throwaway course directory."""
    batch = batch_of(assignment, entries)
    if students is not None:
        batch = {s: batch[s] for s in students}
    with tempfile.TemporaryDirectory() as tmp:
        course = layout.copy_course(Path(tmp) / "course")
        grading.release(course, assignment)
        write(course, assignment, batch)
        found = outcomes(course, assignment, batch, grading.grade(course, assignment))
        release = nbformat.read(course.release_notebook(assignment), as_version=4)
    solutions = answers.solution_answers(nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4))
    for outcome in found:
        outcome.public = {e: fs for e, fs in public_failures(outcome.entry.cells, release, solutions).items() if fs}
    return found


def public_failures(cells: dict[str, str], release: nbformat.NotebookNode, solutions: dict[str, str]
                    ) -> dict[str, list[checks.Check]]:
    """The public checks that fail, per exercise, when a student fills the release with the instructor's answers
    and `cells`, then runs every check cell (local mode, as in Colab; these answers are the catalogue's own code, so
    they run here, in a namespace of their own, without a kernel)."""
    import torch  # here: the kit's other commands need no torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only wait for each other on a busy machine (3x slower)
    try:
        return _run_check_cells(cells, release, solutions)
    finally:
        torch.set_num_threads(threads)


def _run_check_cells(cells: dict[str, str], release: nbformat.NotebookNode, solutions: dict[str, str]
                     ) -> dict[str, list[checks.Check]]:
    namespace = scoring.notebook_namespace(release, "__main__", grading=False)
    failed = {}
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            code = cells.get(meta["grade_id"], solutions[meta["grade_id"]])
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
                exec(compile(code, f"<answer: {meta['grade_id']}>", "exec"), namespace)
        elif meta.get("grade") and meta.get("points"):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed), contextlib.suppress(Exception):
                exec(compile(cell.source, f"<release: {meta['grade_id']}>", "exec"), namespace)
            failed[answers.exercise_of(meta["grade_id"])] = [c for c in checks.parse(printed.getvalue()) if not c.passed]
    return failed


def named(outcome: EntryOutcome) -> bool:
    """Whether grading told a wrong answer its own mistake: a message of a failed check holds the entry's `expect`
    words (the mistake in the catalogue's words), not only a number such as the largest difference."""
    reasons = " | ".join(f.reason for fs in outcome.failures.values() for f in fs)
    return bool(outcome.entry.expect) and outcome.entry.expect in reasons


def table(found: list[EntryOutcome]) -> str:
    """Per entry: wrong or correct, its name, whether the public checks flag it before hand-in (their exercises), the
    points grading took away per exercise, whether the messages name the mistake (wrong answers), then each failed
    check's message."""
    lines = [f"{'':7}  {'public':<28}  {'graded':<28}  {'named':<5}  entry"]
    for o in sorted(found, key=lambda o: (o.entry.correct, o.entry.name)):
        public = ", ".join(o.public) or "-"
        lost = ", ".join(f"{e} -{p:g}" for e, p in o.lost.items()) or "full marks"
        said = "-" if o.entry.correct else "yes" if named(o) else "no"
        lines.append(f"{'correct' if o.entry.correct else 'wrong  '}  {public:<28}  {lost:<28}  {said:<5}  {o.entry.name}")
        lines += [f"           ✗ {c.description} (-{c.points:g}): {c.reason}" for fs in o.failures.values() for c in fs]
    wrong = [o for o in found if not o.entry.correct]
    flagged = sum(bool(set(o.public) & set(o.entry.cells)) for o in wrong)
    lines.append(f"public checks flag {flagged} of {len(wrong)} wrong answers in their own exercise; "
                 f"{sum(bool(o.public) for o in found if o.entry.correct)} correct answers flagged; "
                 f"grading names the mistake of {sum(named(o) for o in wrong)} of {len(wrong)} wrong answers")
    return "\n".join(lines)
