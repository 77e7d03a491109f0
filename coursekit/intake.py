"""Checks every hand-in under submitted/ and stages the gradable ones for nbgrader.

Nothing under submitted/ is ever written. Each student's folder gets a verdict: graded as is,
graded after a fix (a renamed notebook), or not gradable, with the reason in plain words.
Gradable notebooks are copied, under the expected name, to the staging folder that nbgrader
autogrades from.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import layout


@dataclass
class Verdict:
    student: str
    gradable: bool
    note: str = ""          # what was fixed, or why it can't be graded
    notebook: Path | None = None  # the file that is graded


def _problem(path: Path) -> str:
    """Why the file is not a readable notebook, or "" if it is one."""
    data = path.read_bytes()
    if not data.strip():
        return f"{path.name} is empty (0 bytes of notebook)"
    try:
        nbformat.reads(data.decode("utf-8"), as_version=4)
    except UnicodeDecodeError:
        return f"{path.name} is not a text file (is it a zip or a PDF?)"
    except (json.JSONDecodeError, nbformat.reader.NotJSONError):
        return f"{path.name} is not a notebook: it is not valid JSON (was it saved as HTML or truncated?)"
    except Exception as error:  # nbformat's validation errors come in several types
        return f"{path.name} is not a readable notebook: {error}"
    return ""


def inspect(folder: Path, student: str) -> Verdict:
    """The verdict on one student's folder submitted/<student>/<assignment>/."""
    if not folder.is_dir():
        return Verdict(student, False, f"no {layout.ASSIGNMENT}/ folder in the submission")
    expected = folder / layout.NOTEBOOK
    others = sorted(p for p in folder.glob("*.ipynb") if p.name != layout.NOTEBOOK)
    if expected.is_file():
        problem = _problem(expected)
        note = f"ignored other notebooks: {', '.join(p.name for p in others)}" if others and not problem else ""
        return Verdict(student, not problem, problem or note, None if problem else expected)
    if not others:
        return Verdict(student, False, f"no notebook: {layout.NOTEBOOK} is missing")
    if len(others) > 1:
        names = ", ".join(p.name for p in others)
        return Verdict(student, False, f"{layout.NOTEBOOK} is missing, and several other notebooks were handed in: {names}")
    problem = _problem(others[0])
    if problem:
        return Verdict(student, False, problem)
    return Verdict(student, True, f"graded {others[0].name} as {layout.NOTEBOOK}", others[0])


def students(submitted: Path) -> list[str]:
    return sorted(p.name for p in submitted.iterdir() if p.is_dir() and not p.name.startswith(".")) if submitted.is_dir() else []


def stage(submitted: Path, staging: Path) -> list[Verdict]:
    """Inspects every student under `submitted` and copies the gradable notebooks to `staging`."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    verdicts = [inspect(layout.submission_dir(submitted, s), s) for s in students(submitted)]
    for verdict in verdicts:
        if verdict.gradable:
            target = layout.submission_dir(staging, verdict.student)
            target.mkdir(parents=True)
            shutil.copyfile(verdict.notebook, target / layout.NOTEBOOK)
            timestamp = verdict.notebook.parent / "timestamp.txt"
            if timestamp.is_file():
                shutil.copyfile(timestamp, target / "timestamp.txt")
    return verdicts
