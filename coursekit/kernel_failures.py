"""A kernel that dies, hangs or sends what can't be read costs the exercise it was running, not the whole hand-in.

nbclient raises when the kernel dies (os._exit, killed when out of memory), when it can't be interrupted after a cell's
time-out, or when a message can't be read (coursekit/bounded.py); nbgrader then fails the whole hand-in, although the
exercises before were graded honestly. GradedExecute (coursekit/scoring.py) catches those, and `KernelFailures` decides
what they cost:

- the exercise the failing cell belongs to is lost: its test cell reports "not graded" and the reason, 0 points. A
  cell belongs to the exercise whose test cell is the next one at or after it (the answer, the examples that call it,
  and the test cell itself);
- the exercises graded before keep their points;
- the rest of the notebook runs in a fresh kernel, started from the same (sandboxed) kernelspec, after the cells before
  the failing one are run again in it (`replay`), but for the cells that failed, that ran out of time (they would
  again) and the test cells (already judged);
- at most MAX_RESTARTS restarts per hand-in: past them, or when a restart fails, the remaining exercises are "not
  graded", with the reason, never a silent 0.

`lost_exercises` reads, from an autograded notebook, which exercises were lost and why: the grading note says so.
"""

from dataclasses import dataclass, field

from nbclient.exceptions import CellTimeoutError, DeadKernelError

from . import answers, notebook_checks
from .bounded import UnreadableMessage

MAX_RESTARTS = 3

NOT_GRADED = "not graded"  # the check line of a lost exercise: "  ✗ not graded [0/p]: <reason>"
DIED = "the kernel died while this exercise ran (out of memory?)"
HUNG = "the kernel stopped responding while this exercise ran and could not be interrupted"
UNREADABLE = "the kernel sent a message that could not be read while this exercise ran: {detail}"
TOO_MANY = "grading stopped after {restarts} kernel failures in this notebook"
NO_RESTART = "the kernel could not be started again after a failure ({detail})"
CELL_NOTE = "\n⚠ Grading: {reason}. The rest of the notebook was run in a fresh kernel.\n"
CELL_NOTE_STOPPED = "\n⚠ Grading: {reason}. The rest of the notebook was not run.\n"


def reason_for(error: Exception) -> str | None:
    """What an exception raised while a cell ran says about the kernel, in the student's words; None for one that is
    not the kernel's doing."""
    if isinstance(error, DeadKernelError):
        return DIED
    if isinstance(error, CellTimeoutError):
        return HUNG
    if isinstance(error, UnreadableMessage):
        return UNREADABLE.format(detail=error)
    if isinstance(error, (KeyError, TypeError, ValueError, AttributeError)):  # a message without the fields it needs
        return UNREADABLE.format(detail=f"a message nbclient could not use ({type(error).__name__})")
    return None


def lost_lines(exercise: str, points: float, reason: str) -> list[str]:
    """The lines of a lost exercise's test cell: one check line with the reason, and the points (none)."""
    return [notebook_checks.header_line(exercise),
            notebook_checks.check_line(False, NOT_GRADED, f"{points:g}", reason),
            notebook_checks.summary_line(exercise, 0, points, points)]


@dataclass
class KernelFailures:
    """The kernel failures of one hand-in's run: which exercises they cost, and which cells a fresh kernel replays.

    `owners[i]` is the grade_id of the test cell that cell i belongs to (None after the last test cell)."""
    owners: list
    restarts: int = 0
    lost: dict = field(default_factory=dict)       # test cell grade_id -> why it was not graded
    skipped: set = field(default_factory=set)      # cells never to run again: they failed, or ran out of time
    stopped: str = ""                              # why nothing more runs ("" while it does)

    @classmethod
    def of(cls, cells: list, is_test_cell) -> "KernelFailures":
        owners, following = [None] * len(cells), None
        for index in reversed(range(len(cells))):
            if is_test_cell(cells[index]):
                following = answers.grade_id(cells[index])
            owners[index] = following
        return cls(owners)

    def failed(self, index: int, reason: str, lose: bool = True) -> bool:
        """Cell `index` failed for `reason`: its exercise is lost (unless not `lose`: a cell run again, whose exercise
        was graded already). True when a restart is allowed, else grading stops."""
        self.skipped.add(index)
        owner = self.owners[index]
        if lose and owner is not None and owner not in self.lost:
            self.lost[owner] = reason
        if self.restarts >= MAX_RESTARTS:
            self.stop(TOO_MANY.format(restarts=self.restarts + 1))
            return False
        self.restarts += 1
        return True

    def stop(self, reason: str) -> None:
        self.stopped = reason

    def why_not_graded(self, grade_id: str) -> str | None:
        """Why test cell `grade_id` is not graded (lost, or after grading stopped); None when it is graded."""
        return self.lost.get(grade_id) or self.stopped or None

    def replay(self, index: int, cells: list, is_test_cell) -> list[int]:
        """The cells a fresh kernel runs before cell `index`: the code cells before it, but for the test cells and
        those skipped."""
        return [i for i in range(index) if cells[i].get("cell_type") == "code" and not is_test_cell(cells[i])
                and i not in self.skipped]


def lost_exercises(nb) -> dict[str, str]:
    """The exercises of an autograded notebook that a kernel failure cost, and why: {exercise: reason}."""
    lost = {}
    marker = f"{notebook_checks.FAILED} {NOT_GRADED} ["
    for cell in nb.cells:
        grade_id = answers.grade_id(cell)
        if cell.get("cell_type") != "code" or not grade_id:
            continue
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines() if output.get("output_type") == "stream" else []:
                if line.strip().startswith(marker) and "]: " in line:
                    lost[answers.exercise_of(grade_id)] = line.split("]: ", 1)[1]
    return lost


def note(lost: dict[str, str]) -> str:
    """The grading note of the exercises lost to kernel failures, grouped by reason."""
    by_reason = {}
    for exercise, reason in lost.items():
        by_reason.setdefault(reason, []).append(exercise)
    return "; ".join(f"not graded ({reason}): {', '.join(exercises)}" for reason, exercises in by_reason.items())
