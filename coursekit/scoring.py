"""Scores every test cell outside the student's kernel, from the data the kernel's probes return.

The student's kernel is hostile: anything it prints, displays or returns as a score may be forged, and every
helper in it may be replaced. So while nbgrader executes a hand-in, `GradedExecute` (nbgrader's Execute,
configured in nbgrader_config.py) runs each test cell in the kernel in "probe" mode: the cell's checks call the
student's code on their inputs and send the results out as plain data (see coursekit/notebook_checks.py). The
grader, in this process, holds its own copy of the assignment's checks, made from the instructor's source
notebook: its helpers, its test cells, and the grader-only cells (references, expected values, verdicts) that
never leave it. It judges the data with those verdicts, and writes the cell's outputs itself: one line per
check and the points, which nbgrader then reads as the cell's partial credit. Whatever the kernel printed in a
test cell is discarded.

The kernel never sees the grader-only cells. Test cells run without being stored in the kernel's input history,
and any line of the hidden tests that student code prints anyway (it can watch the cells it is given) is
removed from the outputs. While it executes, every cell has an output budget, and so has the notebook.

What the kernel sends is bounded before it is parsed (coursekit/bounded.py), and every probe byte counts against the
probe budgets of its cell and of the hand-in. A kernel that dies, hangs or sends what can't be read costs the exercise
it was running; the rest of the notebook runs in a fresh kernel (coursekit/kernel_failures.py).
"""

import copy
import json
import re
import secrets

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Float, Integer, Unicode

from . import answers, bounded, demo_cells, kernel_failures, limit_output, notebook_checks

GRADER_ONLY = "grader-only"  # the tag of the source notebook's cells that only the grader runs
HELPERS = "grading_helpers"
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n(.*?)^[ \t]*### END HIDDEN TESTS", re.S | re.M)
REDACTED = "[a line of the hidden tests, removed]"


def is_grader_only(cell) -> bool:
    return GRADER_ONLY in cell.get("metadata", {}).get("tags", [])


def is_test_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution") \
        and bool(meta.get("points"))


def notebook_namespace(notebook: NotebookNode, name: str, grading: bool) -> dict:
    """A namespace of its own, outside any kernel, in which a notebook's imports and helpers cells have run, as in a
    notebook on the CPU: the grader's (grading) or a student's run before hand-in (not grading)."""
    namespace = {"__name__": name, "GRADING": grading, "OFFLINE": True, "IN_COLAB": False, "device": "cpu"}
    by_id = {answers.grade_id(c): c for c in notebook.cells if answers.grade_id(c)}
    for grade_id in ("imports", HELPERS):
        exec(compile(by_id[grade_id].source, f"<{name}: {grade_id}>", "exec"), namespace)
    return namespace


class Grader:
    """The grader's own copy of an assignment's checks, replayed in notebook order in a namespace of its own.

    Cells are executed as the instructor's notebook orders them: the imports and the helpers first, then each
    grader-only cell and each test cell as grading reaches it, so that a verdict sees the names its own test
    cell defined (a later cell may reuse a name)."""

    verdict_seconds = bounded.VERDICT_SECONDS  # the time one verdict may take (coursekit/bounded.py)

    def __init__(self, source: NotebookNode):
        self.source = source
        self.namespace = notebook_namespace(source, "coursekit_grader", grading=True)
        self.checks_class = self.namespace["Checks"]
        self.checks_class.mode = "record"
        self._pending = [c for c in source.cells if is_grader_only(c) or is_test_cell(c)]
        self._recorded = {}  # grade_id -> the recorded checks of that test cell
        self._hidden = None
        self.test_cells = {answers.grade_id(c): c for c in source.cells if is_test_cell(c)}
        # The reference: the instructor's solution, in a namespace of its own, where the test cells' probes run on the
        # inputs drawn for the hand-in being graded.
        self.reference = notebook_namespace(source, "coursekit_reference", grading=True)
        self.reference["Checks"].mode = "reference"
        self._reference_pending = [c for c in source.cells if answers.is_solution(c) or is_test_cell(c)]

    def _run(self, code: str, name: str) -> None:
        exec(compile(code, f"<grader: {name}>", "exec"), self.namespace)

    def checks_of(self, grade_id: str):
        """The checks of test cell `grade_id`, recorded: the grader-only cells before it run first."""
        while grade_id not in self._recorded and self._pending:
            cell = self._pending.pop(0)
            self._run(cell.source, answers.grade_id(cell) or "grader-only cell")
            if is_test_cell(cell):
                self._recorded[answers.grade_id(cell)] = self.checks_class.recorded[-1]
        if grade_id in self._recorded:
            return self._recorded[grade_id]
        raise KeyError(f"no test cell {grade_id} after the cells already graded")

    def references_of(self, grade_id: str, salt: int) -> list[tuple]:
        """(status, data) of each check of test cell `grade_id` when its probe calls the solution, on the inputs
        drawn with `salt`: the solution's cells before it run first."""
        checks_class = self.reference["Checks"]
        while self._reference_pending:
            cell = self._reference_pending.pop(0)
            if not is_test_cell(cell):
                exec(compile(cell.source, f"<reference: {answers.grade_id(cell)}>", "exec"), self.reference)
                continue
            checks_class.grading_salt, checks_class.references = salt, []
            try:
                exec(compile(cell.source, f"<reference: {answers.grade_id(cell)}>", "exec"), self.reference)
            finally:
                checks_class.grading_salt = checks_class.salt = 0
            if answers.grade_id(cell) == grade_id:
                return checks_class.references
        raise KeyError(f"no test cell {grade_id} after the cells already graded")

    def judge(self, grade_id: str, messages: list[dict], timed_out: bool, salt: int) -> tuple[list[str], float]:
        """The check lines and the points of test cell `grade_id`, from the probe messages its kernel sent: each
        check's verdict on the notebook's own inputs, and its data on the inputs drawn with `salt` against the
        solution's on the same inputs."""
        checks = self.checks_of(grade_id)
        references = self.references_of(grade_id, salt)
        received = {}
        for message in messages:
            key = (message.get("index"), message.get("drawn"))
            if type(key[0]) is int and type(key[1]) is bool and key not in received:
                received[key] = message
        reasons = []
        for index, (description, _, verdict, compare, vouched_by) in enumerate(checks.entries):
            reason = self._reason(received.get((index, False)), description, verdict, timed_out)
            if reason is None and vouched_by is None:
                reason = self._drawn_reason(received.get((index, True)), description, compare, references[index], timed_out)
            reasons.append(reason)
        passed = {entry[0]: reason is None for entry, reason in zip(checks.entries, reasons, strict=True)}
        for index, (*_, vouched_by) in enumerate(checks.entries):
            if reasons[index] is None and vouched_by is not None and not passed.get(vouched_by, False):
                reasons[index] = f"counts only with the check \u201c{vouched_by}\u201d, which did not pass"
        lines, earned = [notebook_checks.header_line(checks.exercise)], 0
        for (description, points, *_), reason in zip(checks.entries, notebook_checks.without_repeats(reasons), strict=True):
            earned += points if reason is None else 0
            lines.append(notebook_checks.check_line(reason is None, description, points, reason))
        lines.append(notebook_checks.summary_line(checks.exercise, earned, sum(e[1] for e in checks.entries),
                                                  checks.points))
        return lines, min(earned, checks.points)

    def _drawn_reason(self, message, description, compare, reference, timed_out) -> str | None:
        """Why a check whose verdict passed still fails (None: it doesn't): its data on the inputs drawn while grading
        must match the solution's."""
        status, expected = reference
        if status != "ok":
            detail = expected if isinstance(expected, str) else " ".join(map(str, expected or ()))
            return f"the grader could not compute its reference for this check ({self._text(detail)}): tell your instructor"
        reason = self._reason(message, description, lambda data: self._compare(compare, data, expected), timed_out)
        if reason is None or reason in (notebook_checks.CELL_TIMED_OUT, notebook_checks.NO_ANSWER) \
                or reason.startswith(bounded.OVERTIME):
            return reason
        return f"{DRAWN_MISMATCH}, where the result is not the solution's ({reason}): its points need right values there too"

    def _compare(self, compare, data, expected) -> None:
        if compare is None:
            notebook_checks.same_data(data, expected)
        else:
            (compare if callable(compare) else self.namespace[compare])(data, expected)

    def _reason(self, message, description, verdict, timed_out) -> str | None:
        """Why a check failed (None: it passed), judged here from the kernel's message for it."""
        if message is None or message.get("description") != description:
            return notebook_checks.CELL_TIMED_OUT if timed_out else notebook_checks.NO_ANSWER
        status = message.get("status")
        if status == "ok":
            try:
                data = notebook_checks.unpack(message)
            except notebook_checks.ProbeDataError as error:
                return f"what your code returned could not be read ({error})"
            judge = verdict if callable(verdict) else self.namespace[verdict]
            try:
                bounded.within_seconds(self.verdict_seconds, judge, data)
            except AssertionError as error:
                return self._text(str(error), MAX_REASON_CHARS) or "a check failed"
            except Exception as error:  # data the verdict could not use: the student's code returned something odd
                return f"the check could not use what your code returned ({type(error).__name__}: {self._text(str(error))})"
            return None
        error = message.get("error")
        if status in ("error", "failed") and isinstance(error, list) and len(error) == 2 \
                and all(isinstance(e, str) for e in error):
            result = (self._text(error[0], 60), self._text(error[1])) if status == "error" else self._text(error[1])
            return notebook_checks.reason_for(status, result, self.checks_class.seconds)
        if status in ("timeout", "skipped"):
            return notebook_checks.reason_for(status, None, self.checks_class.seconds)
        return notebook_checks.NO_ANSWER

    def hidden_lines(self) -> list[str]:
        """The lines of the hidden tests worth hiding (not blank, not trivially short), longest first."""
        if self._hidden is None:
            lines = set()
            for cell in self.test_cells.values():
                for region in HIDDEN.findall(cell.source):
                    lines.update(line.strip() for line in region.splitlines() if len(line.strip()) >= 12)
            self._hidden = sorted(lines, key=len, reverse=True)
        return self._hidden

    def _text(self, text: str, limit: int = 0) -> str:
        """Text from the kernel (or computed from its data) as it may reach a page: the hidden tests' lines removed
        first, then on one line, bounded."""
        hidden = self.hidden_lines()
        text = redact(text[:MAX_KERNEL_TEXT * 20], hidden)
        # A piece of a hidden line, cut where the kernel chose to cut its text, is removed too.
        text = "\n".join(REDACTED if len(line.strip()) >= 20 and any(line.strip() in h for h in hidden) else line
                         for line in text.splitlines())
        return one_line(text, limit or MAX_KERNEL_TEXT)


# Why a check whose verdict passed on the notebook's inputs still fails: its result on the drawn inputs (an honest
# answer with wrong values reads this on a check of shapes, as an answer that only knows the notebook's example does).
DRAWN_MISMATCH = "passes on the notebook's inputs, but not on other inputs of the same sizes drawn while grading"


# Kernel-made text (an exception's message, a probe's own reason) reaches a check line, a feedback page, a CSV:
# one line, this long at most. The grader's own reasons may be longer, but are bounded too.
MAX_KERNEL_TEXT = 300
MAX_REASON_CHARS = 1500


def one_line(text: str, limit: int = MAX_KERNEL_TEXT) -> str:
    """`text` on one line (any run of white space, control characters included, made one space), cut at `limit`."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def redact(text: str, lines: list[str]) -> str:
    """`text` without any of `lines`, whether printed as they are or inside a repr (escaped quotes)."""
    for line in lines:
        for form in {line, line.replace("\\", "\\\\"), line.replace("\\", "\\\\").replace("'", "\\'"),
                     line.replace("\\", "\\\\").replace('"', '\\"')}:
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def redact_outputs(cell, lines: list[str]) -> None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            output["text"] = redact(output["text"], lines)
        elif output.get("output_type") == "error":
            output["evalue"] = redact(output.get("evalue", ""), lines)
            output["traceback"] = [redact(t, lines) for t in output.get("traceback", [])]
        for mime, value in output.get("data", {}).items():
            if isinstance(value, str):
                output["data"][mime] = redact(value, lines)


class GradedExecute(kernel_failures.SurvivesKernelFailures, Execute):
    """nbgrader's Execute, with the points of every test cell computed here from the probes' data."""

    course_root = Unicode("", help="the course directory: the instructor notebooks are in its source/").tag(config=True)
    cell_output_budget = Integer(200_000, help="characters of output one cell may keep").tag(config=True)
    notebook_output_budget = Integer(2_000_000, help="characters of output a whole notebook may keep").tag(config=True)
    max_output_chars = Integer(20_000, help="characters one output may keep").tag(config=True)
    # A probe's data is kept until its cell is judged, and parsed JSON takes up to 20 times its size on the wire.
    probe_budget = Integer(4 * 2**20, help="bytes of probe data (JSON and tensors, as sent) one check cell may send "
                           "(the largest, pw3's test_sample, sends about 2.9 MB on its two runs: mostly tensors; "
                           "tests/test_notebook_checks.py keeps every cell's well under it)").tag(config=True)
    hand_in_probe_budget = Integer(16 * 2**20, help="bytes of probe data a whole hand-in may send").tag(config=True)
    verdict_seconds = Float(bounded.VERDICT_SECONDS, help="seconds one verdict may take (milliseconds on honest data)"
                            ).tag(config=True)
    skip_demo_cells = Bool(True, help="skip the cells the instructor's notebook tags `demo` that no cell that runs "
                           "needs (coursekit/demo_cells.py)").tag(config=True)

    def create_kernel_manager(self):
        """nbclient's kernel manager, whose clients read the kernel's messages within bounds (coursekit/bounded.py)."""
        km = super().create_kernel_manager()
        bounded.bound_kernel_manager(km)
        return km

    def _is_graded(self, cell) -> bool:
        return is_test_cell(cell) and answers.grade_id(cell) in self._grader.test_cells

    def preprocess(self, nb, resources, km=None):
        meta = resources["nbgrader"]
        source = nbformat.read(f"{self.course_root}/source/{meta['assignment']}/{meta['notebook']}.ipynb", as_version=4)
        self._grader = Grader(source)
        self._grader.verdict_seconds = self.verdict_seconds
        self._probing, self._messages, self._judged = None, [], {}
        self._spent, self._cell_spent, self._dropped = 0, {}, {}
        self._hand_in_probe_bytes, self._replaying, self._output_failure = 0, False, None
        self._failures = kernel_failures.KernelFailures.of(nb.cells, self._is_graded)
        self._failures.not_run = demo_cells.skipped(nb.cells, source.cells) if self.skip_demo_cells else set()
        self.log.info("Demo cells skipped: %s", ", ".join(answers.grade_id(nb.cells[i]) for i in
                                                        sorted(self._failures.not_run)) or "none")
        nb, resources = super().preprocess(nb, resources, km)
        lines = self._grader.hidden_lines()
        for index, cell in enumerate(nb.cells):
            if index in self._judged:
                cell.outputs = self._judged[index]
            else:
                redact_outputs(cell, lines)
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        grade_id = answers.grade_id(cell)
        self._check_assign_resources(resources)
        if index in self._failures.not_run:  # a demo cell no cell that runs needs: it keeps no outputs
            cell.outputs, cell.execution_count = [], None
            return cell, self.resources
        graded = self._is_graded(cell)
        why_not = self._failures.why_not_graded(grade_id) if graded else self._failures.stopped
        if why_not:  # a lost exercise's test cell, or any cell once grading stopped
            if graded:
                self._not_graded(index, grade_id, why_not)
            elif cell.get("cell_type") == "code":
                cell.outputs = []
            return cell, self.resources
        if not graded:
            self._run_cell(cell, index, store_history=True)
            return cell, self.resources
        trusted = self._grader.test_cells[grade_id]
        # The instructor's test cell, whatever the hand-in holds, told the salt of its drawn inputs as it starts.
        salt = secrets.randbelow(2**62 - 1) + 1
        cell.source = f"Checks.grading_salt = {salt}\n" + trusted.source
        self._probing, self._messages, self._probe_bytes = index, [], 0
        try:
            executed = self._run_cell(cell, index, store_history=False)
        finally:
            self._probing = None
            cell.source = trusted.source
        if executed is None:  # the kernel failed: the exercise is lost (_kernel_failed)
            return cell, self.resources
        cell = executed
        cell.source = trusted.source
        timed_out = any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError" for o in cell.outputs)
        self.log.info("%s: %d probe messages, %d bytes", grade_id, len(self._messages), self._probe_bytes)
        lines, points = self._grader.judge(grade_id, self._messages, timed_out, salt)
        hidden = self._grader.hidden_lines()
        lines = [redact(line, hidden) for line in lines]
        self._judged[index] = _judged_outputs(lines, points, cell.get("execution_count"))
        return cell, self.resources

    def _not_graded(self, index, grade_id, reason) -> None:
        """Test cell `index` is not graded, for `reason`: its exercise gets 0 points, and the reason in one line."""
        points = float(self._grader.test_cells[grade_id].metadata["nbgrader"]["points"])
        lines = kernel_failures.lost_lines(answers.exercise_of(grade_id), points, reason)
        self._judged[index] = _judged_outputs(lines, 0, None)

    # Widgets' messages would keep their state in this process, whatever its size: grading needs none of them.
    def handle_comm_msg(self, outs, msg, cell_index):
        return None

    # Display updates could rewrite the outputs of earlier cells (a test cell's among them) past every budget:
    # grading needs none of them.
    def _update_display_id(self, display_id, msg):
        return None

    def output(self, outs, msg, display_id, cell_index):
        if self._replaying:  # the cells run again in a fresh kernel keep the outputs of their first run
            return None
        data = msg.get("content", {}).get("data")
        if isinstance(data, dict) and notebook_checks.PROBE_MIME in data:
            message = data[notebook_checks.PROBE_MIME]
            size = msg.get(bounded.WIRE_BYTES) or len(json.dumps(message, default=str))  # all of it, JSON included
            if cell_index == self._probing and isinstance(message, dict) and len(self._messages) < 1000 \
                    and self._probe_bytes + size <= self.probe_budget \
                    and self._hand_in_probe_bytes + size <= self.hand_in_probe_budget:
                self._messages.append(message)
                self._probe_bytes += size
                self._hand_in_probe_bytes += size
            return None  # probe data is never an output, wherever it comes from: beyond the budget, it is dropped
        if cell_index in self._dropped and msg.get("msg_type") != "error":
            # Once a cell's output is cut, the rest of its flood is dropped unread: building and validating each output
            # (half the time of a message) would keep the grader behind the kernel, past nbclient's iopub_timeout.
            return None
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return None
        size = _size(out)
        if size > self.max_output_chars:
            limit_output.cut_output(out, self.max_output_chars)
            size = _size(out)
        spent = self._cell_spent.get(cell_index, 0)
        if spent + size > self.cell_output_budget or self._spent + size > self.notebook_output_budget:
            outs.remove(out)
            if cell_index not in self._dropped:
                self._dropped[cell_index] = True
                whose, budget = (("this cell's", self.cell_output_budget) if spent + size > self.cell_output_budget
                                 else ("the notebook's", self.notebook_output_budget))
                outs.append(nbformat.v4.new_output("stream", name="stdout", text=(
                    f"\n… further output of this cell dropped: {whose} output budget ({budget:,} characters) "
                    "is spent\n")))
            return None
        self._cell_spent[cell_index] = spent + size
        self._spent += size
        return out


def _judged_outputs(lines: list[str], points: float, execution_count) -> list:
    """A judged test cell's outputs: its check lines, and its points as the cell's result (nbgrader's partial credit)."""
    return [nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n"),
            nbformat.v4.new_output("execute_result", data={"text/plain": f"{points:g}"},
                                   execution_count=execution_count)]


def _size(output) -> int:
    if output.get("output_type") == "stream":
        return len(output.get("text", ""))
    if output.get("output_type") == "error":
        return len(output.get("evalue", "")) + sum(len(t) for t in output.get("traceback", []))
    return sum(len(str(v)) for v in output.get("data", {}).values())


class RemoveGraderOnlyCells(NbGraderPreprocessor):
    """Removes the grader-only cells (tag GRADER_ONLY): they never reach a release, a solution or a gradebook."""

    def preprocess(self, nb, resources):
        nb = copy.deepcopy(nb)
        nb.cells = [c for c in nb.cells if not is_grader_only(c)]
        return nb, resources

