"""A kernel that dies, hangs or sends what can't be read costs the exercise it was running, not the whole hand-in.

nbclient raises when the kernel dies (os._exit, killed when out of memory), when it can't be interrupted after a cell's
time-out, or when a message can't be read (coursekit/bounded.py); nbgrader then fails the whole hand-in, although the
exercises before were graded honestly. GradedExecute (coursekit/scoring.py) runs every cell through
`SurvivesKernelFailures._run_cell`, which catches those, and `KernelFailures` decides what they cost:

- the exercise the failing cell belongs to is lost: its test cell reports "not graded" and the reason, 0 points. A
  cell belongs to the exercise whose test cell is the next one at or after it (the answer, the examples that call it,
  and the test cell itself);
- the exercises graded before keep their points;
- the rest of the notebook runs in a fresh kernel, started from the same (sandboxed) kernelspec, after the cells before
  the failing one are run again in it (`replay`), but for the cells that failed, that ran out of time (they would
  again) and the test cells (already judged);
- the demo cells grading skips (coursekit/demo_cells.py) are not replayed either;
- at most MAX_RESTARTS restarts per hand-in: past them, or when a restart fails, the remaining exercises are "not
  graded", with the reason, never a silent 0.

A message that can't be read fails its cell at once (nbclient would wait for the cell to end, while the kernel's next
messages pile up unread in the worker), and a cut connection is told apart from a dead kernel by the kernel's process.

`lost_exercises` reads, from an autograded notebook, which exercises were lost and why: the grading note says so.
"""

import copy
import time
from dataclasses import dataclass, field

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync

from . import answers, notebook_checks
from .bounded import ConnectionCut, UnreadableMessage

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
    not_run: set = field(default_factory=set)      # cells grading skips: demo cells (coursekit/demo_cells.py)
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
        """The cells a fresh kernel runs before cell `index`: the code cells before it, but for the test cells, those
        skipped and those grading does not run."""
        return [i for i in range(index) if cells[i].get("cell_type") == "code" and not is_test_cell(cells[i])
                and i not in self.skipped and i not in self.not_run]


class SurvivesKernelFailures:
    """The part of an nbclient NotebookClient (GradedExecute's) that survives kernel failures: `_run_cell` runs a cell,
    and when the kernel fails, costs the cell's exercise and goes on in a fresh kernel. The client provides
    `_failures` (a KernelFailures), `_replaying` (outputs are dropped while true), `_is_graded(cell)` and
    `_not_graded(index, grade_id, reason)` (writes a lost exercise's test cell)."""

    def _run_cell(self, cell, index, store_history):
        """execute_cell, where a kernel failure costs the cell's exercise and the notebook goes on in a fresh kernel
        (_kernel_failed): the cell run, or None when the kernel failed."""
        self._output_failure = None
        try:
            cell = self.execute_cell(cell, index, store_history=store_history)
        except Exception as error:
            error = self._output_failure or error
            if isinstance(error, ConnectionCut) and self._kernel_died():
                error = DeadKernelError("Kernel died")
            reason = reason_for(error)
            if reason is None:
                raise
            self.log.warning("Cell %d: %s (%s: %s)", index, reason, type(error).__name__, error)
            self._kernel_failed(index, reason)
            return None
        if any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
            self._failures.skipped.add(index)  # a fresh kernel doesn't run it again: it would only time out again
        return cell

    def _kernel_failed(self, index, reason) -> None:
        """Cell `index` failed for `reason`: its exercise is lost, and the kernel is replaced by a fresh one in which
        the cells before are run again, as long as restarts are left (KernelFailures)."""
        restart = self._failures.failed(index, reason)
        while restart:
            try:
                self._replace_kernel()
                replay_failure = self._replay(index)
            except Exception as error:  # no fresh kernel: the rest is not graded, and says why
                self.log.error("The kernel could not be started again: %s: %s", type(error).__name__, error)
                self._failures.stop(NO_RESTART.format(detail=type(error).__name__))
                break
            if replay_failure is None:
                break
            failing, why = replay_failure  # its exercise was graded already: a cell the next fresh kernel skips
            self.log.warning("Cell %d, run again in a fresh kernel: %s", failing, why)
            restart = self._failures.failed(failing, why, lose=False)
        cell = self.nb.cells[index]
        if self._is_graded(cell):
            self._not_graded(index, answers.grade_id(cell), self._failures.lost.get(answers.grade_id(cell), reason))
        else:
            note = CELL_NOTE_STOPPED if self._failures.stopped else CELL_NOTE
            cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=note.format(reason=reason)))

    def _kernel_died(self, seconds: float = 3) -> bool:
        """Whether the kernel's process ended (within `seconds`: a cut connection comes first)."""
        deadline = time.monotonic() + seconds
        while run_sync(self.km.is_alive)():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    async def _async_replace_kernel(self) -> None:
        """Kills the kernel (dead, hung or hostile) and starts a fresh one from the same kernelspec, the sandbox's."""
        km, kc = self.km, self.kc
        self.km = self.kc = None
        try:
            await ensure_async(km.shutdown_kernel(now=True))
        except Exception as error:  # already gone
            self.log.info("Shutting the failed kernel down: %s: %s", type(error).__name__, error)
        if kc is not None:
            await ensure_async(kc.stop_channels())
        self.km = self.create_kernel_manager()
        await self.async_start_new_kernel()
        await self.async_start_new_kernel_client()
        await self.async_wait_for_reply(self.kc.kernel_info())

    _replace_kernel = run_sync(_async_replace_kernel)

    def _replay(self, index):
        """Runs the cells before `index` again in the fresh kernel, as they were (their outputs are dropped, the
        notebook keeps those of the first run): None, or (cell, reason) of a cell that failed the kernel again."""
        self._replaying = True
        try:
            for replayed in self._failures.replay(index, self.nb.cells, self._is_graded):
                original, self._output_failure = self.nb.cells[replayed], None
                try:
                    self.execute_cell(copy.deepcopy(nbformat.from_dict({**original, "outputs": []})), replayed,
                                      store_history=True)
                except Exception as error:
                    reason = reason_for(self._output_failure or error)
                    if reason is None:
                        raise
                    return replayed, reason
                finally:
                    self.nb.cells[replayed] = original
        finally:
            self._replaying = False
        return None

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        """nbclient's reading of the cell's outputs; when a message can't be read, the cell fails at once (nbclient
        would wait for the cell to end, while the kernel's next messages pile up in this process, unread)."""
        try:
            return await super()._async_poll_output_msg(parent_msg_id, cell, cell_index)
        except Exception as error:
            self._output_failure = error
            if self.task_poll_for_reply is not None:
                self.task_poll_for_reply.cancel()
            raise


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
