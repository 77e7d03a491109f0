"""Reads the check lines that the notebook's test cells print, out of an autograded notebook.

Each graded test cell holds one line per check, as the grader writes them (notebook_checks.check_line):
`  ✓ <description> [<points>/<points>]` or `  ✗ <description> [0/<points>]: <reason>`.
"""

import re
from dataclasses import dataclass

import nbformat

from .notebook_checks import FAILED, PASSED

LINE = re.compile(rf"^\s*([{PASSED}{FAILED}]) (.*) \[([\d.]+)/([\d.]+)\](?:: (.*))?$")


@dataclass(frozen=True)
class Check:
    passed: bool
    description: str
    points: float
    reason: str


def parse(text: str) -> list[Check]:
    checks = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            mark, description, _, points, reason = match.groups()
            checks.append(Check(mark == PASSED, description, float(points), reason or ""))
    return checks


def by_test_cell(nb: nbformat.NotebookNode) -> dict[str, list[Check]]:
    """The checks printed by every graded test cell, keyed by the cell's grade_id."""
    result = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            result[meta["grade_id"]] = parse(text)
    return result
