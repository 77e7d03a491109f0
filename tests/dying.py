"""A task whose worker dies on one hand-in (ada's), for tests of the worker processes: a module of its own, light to
import, since each fresh worker process imports it."""

import os
import signal
from pathlib import Path

_calls: Path | None = None


def start(worker: int, calls: str) -> None:
    global _calls
    _calls = Path(calls)


def grade_or_die(student: str) -> str:
    """Notes the call, then kills its own process for ada; grades anyone else."""
    with _calls.open("a") as f:
        f.write(student + "\n")
    if student == "ada":
        os.kill(os.getpid(), signal.SIGKILL)
    return f"graded {student}"
