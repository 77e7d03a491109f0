"""Whether an answer's points depend on the inputs drawn while grading.

Grading draws the inputs of every check anew for each hand-in (coursekit/scoring.py), so a wrong answer must fail the
same checks whatever the draw: one that passes a check on some draws only gets different points for the same code.
This module judges answers as grading does, many times, each time with a new salt, but in this process: the check
cells run in probe mode in a namespace of their own (as in the kernel), their probe messages cross a JSON round trip
(as on the wire) and the Grader judges them against its reference on the same draw. `make catalogue-draws` runs it
on every entry of the catalogues; the tests on the entries that once depended on the draw.
"""

import contextlib
import io
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from unittest import mock

import nbformat

from . import answers, notebook_checks, scoring


@dataclass
class Draws:
    """The points of each exercise over several draws: exercise -> Counter(points -> draws); and the check lines of
    each exercise on the last draw."""
    points: dict[str, Counter] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)

    def varying(self) -> dict[str, list[float]]:
        """The exercises whose points differ between draws, with the points seen."""
        return {e: sorted(c) for e, c in self.points.items() if len(c) > 1}


def kernel_namespace(source: nbformat.NotebookNode, cells: dict[str, str]) -> dict:
    """A namespace like a graded kernel's: the helpers in probe mode, then every exercise cell, the instructor's but
    for those in `cells` (an answer that raises leaves its exercise undefined, as in a kernel)."""
    kernel = scoring.notebook_namespace(source, "__main__", grading=True)
    kernel["Checks"].mode = "probe"
    for grade_id, solution in answers.solution_answers(source).items():
        if grade_id not in ("imports", scoring.HELPERS):
            code = cells.get(grade_id, solution)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
                exec(compile(code, f"<answer: {grade_id}>", "exec"), kernel)
    return kernel


def _probe_messages(kernel: dict, test_source: str, salt: int) -> list[dict]:
    """The probe messages the test cell sends when it runs in `kernel` with `salt`, after a JSON round trip."""
    sent = []

    def display(data, raw=False):
        if isinstance(data, dict) and notebook_checks.PROBE_MIME in data:
            sent.append(json.loads(json.dumps(data[notebook_checks.PROBE_MIME], default=str)))

    with mock.patch("IPython.display.display", display), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.suppress(Exception):
        exec(compile(f"Checks.grading_salt = {salt}\n" + test_source, "<test cell>", "exec"), kernel)
    return sent


def judge(source: nbformat.NotebookNode, cells: dict[str, str], draws: int, kernel: dict | None = None) -> Draws:
    """The points of the exercises in `cells` (exercise grade_id -> source), judged `draws` times, each with a salt of
    its own, as grading judges a hand-in of the instructor's answers with these cells (in `kernel`, if given: a
    kernel_namespace of the same cells)."""
    kernel, found = kernel if kernel is not None else kernel_namespace(source, cells), Draws()
    for draw in range(draws):
        grader = scoring.Grader(source)
        for grade_id, cell in grader.test_cells.items():
            salt = secrets.randbelow(2**62 - 1) + 1
            if answers.exercise_of(grade_id) not in cells:
                grader.references_of(grade_id, salt)  # the reference namespace moves on past it
                if not draw:  # and so does the kernel, once: a later test cell may call a helper this one defines
                    _probe_messages(kernel, cell.source, salt)
                continue
            lines, points = grader.judge(grade_id, _probe_messages(kernel, cell.source, salt), False, salt)
            found.points.setdefault(answers.exercise_of(grade_id), Counter())[points] += 1
            found.lines[answers.exercise_of(grade_id)] = lines
    return found
