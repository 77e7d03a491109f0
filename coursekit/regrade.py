"""The audit of a re-grading after an assignment's tests (or the kit) changed: whose points moved, and by how much.

When `make grade` sees that the tests' hash changed since hand-ins were graded (coursekit/incremental.py), it
records each one's points before grading it again, and then writes reports/<assignment>/regrade-<timestamp>.csv:
one row per student whose points changed, with the total and each exercise's points before and after, the losses
first (largest first). Its summary, printed by `make grade`, says how many students gain and lose, by how much, and
names who loses most first: a fix to a check never lowers a grade silently.
"""

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import answers, layout, results, spreadsheet


@dataclass(frozen=True)
class Change:
    student: str
    before: float
    after: float
    exercises_before: dict[str, float]
    exercises_after: dict[str, float]
    status_after: str

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class Audit:
    assignment: layout.Assignment
    regraded: int          # hand-ins graded again after the change, with points before it
    changes: list[Change]  # those whose points changed: losses first (largest first), then gains (largest first)
    path: Path

    @property
    def losses(self) -> list[Change]:
        return [c for c in self.changes if c.delta < 0]

    @property
    def gains(self) -> list[Change]:
        return [c for c in self.changes if c.delta > 0]

    def summary(self, course_root: Path | None = None) -> str:
        where = self.path.relative_to(course_root) if course_root else self.path
        lines = [f"Re-grading of {self.assignment} after its tests changed: {self.regraded} hand-in"
                 f"{'s' * (self.regraded != 1)} graded again, {len(self.losses)} student"
                 f"{'s' * (len(self.losses) != 1)} lose points, {len(self.gains)} gain, "
                 f"{self.regraded - len(self.changes)} unchanged."]
        for title, group in (("LOSSES", self.losses), ("Gains", self.gains)):
            if not group:
                continue
            deltas = [c.delta for c in group]
            lines.append(f"{title}: {len(group)} student{'s' * (len(group) > 1)}, {_signed(statistics.mean(deltas))} "
                         f"on average ({_signed(min(deltas, key=abs))} to {_signed(max(deltas, key=abs))}):")
            lines += [f"  - {c.student}: {c.before:g} -> {c.after:g} ({_signed(c.delta)})"
                      + (f" [{c.status_after}]" if c.status_after != "graded" else "") + ": " + _by_exercise(c)
                      for c in group]
        lines.append(f"Points before and after, per exercise: {where}")
        return "\n".join(lines)


def _signed(x: float) -> str:
    return f"{x:+.4g}"


def _by_exercise(change: Change) -> str:
    names = list(dict.fromkeys([*change.exercises_before, *change.exercises_after]))
    moved = [(n, change.exercises_after.get(n, 0.0) - change.exercises_before.get(n, 0.0)) for n in names]
    return ", ".join(f"{n} {_signed(d)}" for n, d in moved if d) or "same exercise points (late penalty)"


def audit(course: layout.Course, assignment: layout.Assignment, before: dict[str, dict],
          after: list[results.Result], when: datetime | None = None) -> Audit:
    """The audit of the students in `before` ({student: {"score", "exercises"}}, their points before re-grading),
    against their results now; written to reports/<assignment>/regrade-<timestamp>.csv."""
    now = {r.student: r for r in after}
    changes = []
    for student, old in sorted(before.items()):
        new = now.get(student)
        if new is None:
            continue
        change = Change(student, old["score"], new.score, old["exercises"], dict(new.exercises), new.status)
        if change.delta or change.exercises_before != change.exercises_after:
            changes.append(change)
    changes.sort(key=lambda c: (c.delta >= 0, -abs(c.delta), c.student))
    when = when or datetime.now(UTC)
    path = course.reports_of(assignment) / f"regrade-{when.strftime('%Y%m%dT%H%M%SZ')}.csv"
    exercises = [answers.exercise_of(t) for t in results.test_points(course, assignment)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = spreadsheet.writer(f)
        writer.writerow(["student", "score before", "score after", "change", "status after",
                         *(f"{e} {when_}" for e in exercises for when_ in ("before", "after"))])
        for c in changes:
            writer.writerow([c.student, f"{c.before:g}", f"{c.after:g}", f"{c.delta:g}", c.status_after,
                             *(f"{points.get(e, 0.0):g}" for e in exercises
                               for points in (c.exercises_before, c.exercises_after))])
    return Audit(assignment, len([s for s in before if s in now]), changes, path)
