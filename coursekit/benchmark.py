"""Benchmark: how long one submission takes to autograde, and where the time goes (`make bench-notebook`).

It grades the demo solution in a throwaway course directory, as `make grade` would, then executes the
same notebook in grading mode with nbclient to time each cell. Numbers go in the README, not in tests.
"""

import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from . import grading, layout, samples


def _seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
    return (end - start).total_seconds()


def run(repeats: int = 3) -> str:
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        course = layout.copy_course(Path(tmp) / "course")
        grading.nbgrader(course, "generate_assignment", layout.ASSIGNMENT, "--force")
        solution = samples.notebooks(course)["solution"]
        folder = layout.submission_dir(course.submitted, "bench")
        folder.mkdir(parents=True)
        nbformat.write(solution, folder / layout.NOTEBOOK)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            grading.grade(course)
            times.append(time.perf_counter() - start)
        lines.append(f"autograde of one submission (`make grade`, nbgrader included), {repeats} runs: "
                     + ", ".join(f"{t:.1f} s" for t in times))

        os.environ.update(NBGRADER_EXECUTION="autograde", HF_HUB_OFFLINE="1")
        nb = solution  # executed in place: `nb` gets the outputs and their timings
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=True,
                       resources={"metadata": {"path": str(course.release_notebook.parent)}}).execute()
        lines.append(f"executing the notebook in grading mode (kernel start included): {time.perf_counter() - start:.1f} s")
        slowest = sorted(((c, _seconds(c)) for c in nb.cells if c.cell_type == "code"), key=lambda x: -x[1])[:6]
        lines.append("slowest cells: " + ", ".join(
            f"{c.metadata.get('nbgrader', {}).get('grade_id') or c.id} {s:.1f} s" for c, s in slowest))
    return "\n".join(lines)
