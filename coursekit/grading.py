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

import nbformat
from nbgrader.api import Gradebook

from . import autograde, colab, deadlines, intake, layout, notebook_checks, results
from .autograde import ConfigError, SandboxUnavailable  # noqa: F401 (part of this module's interface)


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


def _run_problems(course: layout.Course, assignment: layout.Assignment, student: str) -> list[str]:
    """What went wrong while a student's notebook ran: the cells that ran out of time (nbclient's own time-out,
    or the grader's record that a check cell ran out of time)."""
    path = layout.submission_dir(course.autograded, student, assignment) / assignment.notebook
    if not path.is_file():
        return []
    nb = nbformat.read(path, as_version=4)
    timeouts, last = [], "the start"
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        last = grade_id or last
        if cell.cell_type != "code":
            continue
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        if any(o.output_type == "error" and "Timeout" in o.get("ename", "") for o in cell.outputs) \
                or notebook_checks.CELL_TIMED_OUT in printed:
            timeouts.append(grade_id or f"a cell of the student's after {last}")
    return ["ran out of time in " + ", ".join(timeouts)] if timeouts else []


def grade(course: layout.Course, assignment: layout.Assignment, sandboxed: bool = True,
          jobs: int | None = None) -> list[results.Result]:
    """Intake, autograde (`jobs` hand-ins at a time, default one per core) and results for every student with a
    folder for `assignment` under the course's submitted/; writes reports/<assignment>/grading.csv."""
    with Gradebook(results.db_url(course)) as gb:
        known = {a.name for a in gb.assignments}
    if assignment.name not in known:  # nbgrader grades only an assignment its gradebook knows
        release(course, assignment)
    # Deadlines (coursekit/deadlines.py): the extensions file is checked whole, and the hand-ins' times, before
    # anything is graded (DeadlineError: nothing changed); then the extensions go to the gradebook.
    extensions = deadlines.check_before_grading(course, assignment)
    verdicts = intake.stage(course, assignment)
    deadlines.apply_extensions(results.db_url(course), assignment, extensions)
    outcomes = autograde.autograde(course, assignment, sandboxed, jobs) if any(v.gradable for v in verdicts) else {}
    tests = results.test_points(course, assignment)
    found = []
    with Gradebook(results.db_url(course)) as gb:
        for verdict in verdicts:
            gb.update_or_create_student(verdict.student)  # so that the export lists every student
            result = results.Result(verdict.student, "graded" if verdict.gradable else "not graded", note=verdict.note)
            result = results.from_gradebook(gb, course, assignment, result, tests, just_graded=True)
            if result.status == "failed":
                outcome = outcomes.get(verdict.student)
                why = outcome.reason if outcome and outcome.reason else "nbgrader could not grade it"
                result.note = "; ".join(filter(None, [result.note, why]))
            elif result.status == "graded":
                result.note = "; ".join(filter(None, [result.note, *_run_problems(course, assignment, verdict.student)]))
            result.note = "; ".join(filter(None, [result.note, *deadlines.notes(course, result, extensions)]))
            found.append(result)
    results.write_report(course, assignment, found)
    return found
