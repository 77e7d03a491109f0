"""The stages of grading an assignment, in one place: release, then for the hand-ins intake -> autograde -> results.

- release: nbgrader generate_assignment (the student version in release/, the assignment in the gradebook);
- intake (`intake.stage`): every folder submitted/<student>/<assignment>/ inspected, the gradable notebooks repaired
  and staged in build/intake/<assignment>/, each student's verdict noted;
- autograde (`autograde.autograde`): nbgrader autograde on the staged hand-ins, in the sandbox, N at a time;
- results (`results`): every student's status, note and points from the gradebook, in reports/<assignment>/;
- feedback: nbgrader generate_feedback, one HTML page per student.

The CLI (`make release`, `make grade`, `make feedback`) and the tests' fixtures both go through these functions.
"""

import subprocess
import sys

from nbgrader.api import Gradebook

from . import autograde, colab, deadlines, gradebook_backup, incremental, intake, layout, regrade, results
from .autograde import ClusterRefused, ConfigError, SandboxUnavailable  # noqa: F401 (part of this module's interface)


def nbgrader(course: layout.Course, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs an nbgrader command in the course root, after checking that nbgrader_config.py loads."""
    autograde.load_config(course.root)
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course.root,
                          env={**autograde.environment(), **(env or {})}, check=check)


def release(course: layout.Course, assignment: layout.Assignment, badge: colab.Target | None = None) -> None:
    """nbgrader generate_assignment: the release notebook, and the assignment with its cells in the gradebook; then the
    release's Colab badge points at `badge` (by default, what colab.target finds for the course)."""
    nbgrader(course, "generate_assignment", assignment.name, "--force")
    colab.set_release_badge(course.release_notebook(assignment), assignment, badge or colab.target(course.root))


def feedback(course: layout.Course, assignment: layout.Assignment) -> None:
    """nbgrader generate_feedback: feedback/<student>/<assignment>/<assignment>.html for every graded hand-in, and
    nothing else there (nbgrader would copy every other file of the autograded folder: the data, the trained model)."""
    nbgrader(course, "generate_feedback", assignment.name, "--force", "--CourseDirectory.ignore=*")


class Graded(list):
    """grade()'s results (a list of results.Result, one per student), and what the batch did: `graded`, the students
    graded now; `unchanged`, those not graded again (same hand-in, tests and kit as at their last grading); `audit`,
    the re-grading audit when the tests or the kit changed since hand-ins were graded (else None)."""

    def __init__(self, found, graded=(), unchanged=(), audit=None):
        super().__init__(found)
        self.graded, self.unchanged, self.audit = list(graded), list(unchanged), audit


def _points(gb: Gradebook, course: layout.Course, assignment: layout.Assignment, student: str,
            tests: dict[str, float]) -> dict | None:
    """A student's points as the gradebook has them now ({"score", "exercises"}), None if not graded there."""
    found = results.from_gradebook(gb, course, assignment, results.Result(student, "graded"), tests)
    return {"score": found.score, "exercises": found.exercises} if found.status == "graded" else None


def _from_record(record: incremental.Record) -> autograde.AutogradeOutcome:
    log = f"[unchanged since its last grading ({record.seconds:.1f} s): not graded again]\n{record.log}"
    return autograde.AutogradeOutcome(record.student, record.success, log, record.seconds, record.reason, record.note,
                                      record.scores)


def grade(course: layout.Course, assignment: layout.Assignment, sandboxed: bool = True,
          jobs: int | None = None, force: bool = False, cluster: str | None = None) -> Graded:
    """Intake, autograde and results for every student with a folder for `assignment` under the course's
    submitted/; writes reports/<assignment>/grading.csv.

    Only the hand-ins that are new or changed since their last grading are graded (coursekit/incremental.py), all
    of them if the assignment's tests or the kit changed, or with `force`; the others keep their grades. A re-grading
    after the tests changed writes an audit of whose points moved (coursekit/regrade.py). Hand-ins are graded
    `jobs` at a time on this machine (default one per core), or on the Dask cluster at the address `cluster`
    (coursekit/cluster.py), which needs a gradebook the cluster's workers share (PostgreSQL). A SQLite gradebook is
    first copied to reports/<assignment>/gradebook-before-<UTC time>.db (coursekit/gradebook_backup.py)."""
    url = results.db_url(course)
    if cluster is not None:
        from . import cluster as dask_cluster

        dask_cluster.check_gradebook(url)
    gradebook_backup.snapshot(course, assignment, url)  # before anything writes it (coursekit/gradebook_backup.py)
    with Gradebook(url) as gb:
        known = {a.name for a in gb.assignments}
    if assignment.name not in known:  # nbgrader grades only an assignment its gradebook knows
        release(course, assignment)
    # Deadlines (coursekit/deadlines.py): the extensions file is checked whole, and the hand-ins' times, before
    # anything is graded (DeadlineError: nothing changed); then the extensions go to the gradebook.
    extensions = deadlines.check_before_grading(course, assignment)
    verdicts = intake.stage(course, assignment)
    deadlines.apply_extensions(url, assignment, extensions)
    gradable = [v.student for v in verdicts if v.gradable]
    tests = results.test_points(course, assignment)
    tests_hash, kit_hash, gradebook = (incremental.tests_hash(course, assignment), incremental.kit_hash(course),
                                       incremental.gradebook_id(url))
    due = deadlines.due_of(course, assignment)
    hashes = {s: incremental.handin_hash(course, assignment, s, f"{due} {extensions.get(s)}") for s in gradable}
    previous = incremental.load(course, assignment)
    before = {}
    with Gradebook(url) as gb:
        todo = [s for s in gradable if force or not (
            incremental.unchanged(previous.get(s), hashes[s], tests_hash, kit_hash, gradebook)
            and incremental.still_graded(gb, course, assignment, s))]
        target = [tests_hash, kit_hash, gradebook]
        pending = incremental.pending_before(course, assignment, target)  # an interrupted re-grading's
        for student in todo:
            last = previous.get(student)
            if student in pending:
                before[student] = pending[student]
            elif last is not None and last.gradebook == gradebook and (last.tests, last.kit) != (tests_hash, kit_hash):
                before[student] = _points(gb, course, assignment, student, tests)
    if before:
        incremental.save_pending_before(course, assignment, target, {**pending, **before})

    def keep(outcome: autograde.AutogradeOutcome) -> None:  # on disk as soon as each hand-in is stored
        incremental.append(course, assignment, incremental.Record(
            outcome.student, hashes[outcome.student], tests_hash, kit_hash, gradebook, outcome.success,
            round(outcome.seconds, 2), outcome.reason, outcome.note, outcome.log, before.get(outcome.student),
            outcome.scores))

    if cluster is not None and todo:
        outcomes = dask_cluster.autograde(course, assignment, cluster, sandboxed, students=todo, on_outcome=keep)
    else:
        outcomes = autograde.autograde(course, assignment, sandboxed, jobs, students=todo, on_outcome=keep) \
            if todo else {}
    incremental.compact(course, assignment)
    records = incremental.load(course, assignment)
    outcomes = {s: outcomes[s] if s in outcomes else _from_record(records[s]) for s in gradable}
    if outcomes:
        autograde.write_log(course, assignment, outcomes)
    found = []
    with Gradebook(url) as gb:
        for verdict in verdicts:
            if not verdict.id_refused:  # a folder whose name is no valid id is reported, never made a student
                gb.update_or_create_student(verdict.student)  # so that the export lists every student
            result = results.Result(verdict.student, "graded" if verdict.gradable else "not graded", note=verdict.note)
            result = results.from_gradebook(gb, course, assignment, result, tests, just_graded=True)
            outcome = outcomes.get(verdict.student)
            if result.status == "failed":
                why = outcome.reason if outcome and outcome.reason else "nbgrader could not grade it"
                result.note = "; ".join(filter(None, [result.note, why]))
            elif result.status == "graded" and outcome is not None:
                result.note = "; ".join(filter(None, [result.note, outcome.note]))
            result.note = "; ".join(filter(None, [result.note, *deadlines.notes(course, result, extensions)]))
            found.append(result)
    results.write_report(course, assignment, found)
    audit = None
    if any(before.get(s) is not None for s in todo):  # the tests changed: every re-grading since, resumed ones too
        earlier = {s: r.before for s, r in records.items()
                   if (r.tests, r.kit, r.gradebook) == (tests_hash, kit_hash, gradebook) and r.before is not None}
        audit = regrade.audit(course, assignment, earlier, found)
    incremental.pending_path(course, assignment).unlink(missing_ok=True)  # the batch went through
    return Graded(found, [s for s in gradable if s in todo], [s for s in gradable if s not in todo], audit)
