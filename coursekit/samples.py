"""Demo submissions made from the instructor notebook, for `make demo` and the tests.

Each sample is what a student could hand in: the release notebook with answers written in (the
instructor's, or a few typical mistakes), untouched, or a damaged file. They go into
submitted/demo-<name>/ and never overwrite a real student's folder.
"""

import shutil

import nbformat

from . import answers, catalogue, layout

MARKER = ".coursekit-sample"  # marks a folder made here, which a later run may replace

# Typical mistakes for the demo, in three exercises: entries of the catalogue (tests/catalogue.py).
DEMO_MISTAKES = ["self_attention: no scaling", "lm_loss: padding counted", "decode: not in eval mode"]


def mistakes() -> dict[str, str]:
    """The demo's wrong answers, keyed by exercise."""
    entries = {e.name: e for e in catalogue.load()}
    return {exercise: code for name in DEMO_MISTAKES for exercise, code in entries[name].cells.items()}


def notebooks(course: layout.Course = layout.COURSE) -> dict[str, nbformat.NotebookNode]:
    """The gradable sample notebooks, by name: the full solution, the untouched release, typical mistakes."""
    source = nbformat.read(course.source_notebook, as_version=4)
    release = nbformat.read(course.release_notebook, as_version=4)
    solution = answers.solution_answers(source)
    return {
        "solution": answers.fill(release, solution),
        "untouched": release,
        "mistakes": answers.fill(release, {**solution, **mistakes()}),
    }


def write(course: layout.Course = layout.COURSE) -> list[str]:
    """Writes every sample under the course's submitted/; returns the student ids written."""
    nbs = notebooks(course)
    files = {name: (layout.NOTEBOOK, nbformat.writes(nb)) for name, nb in nbs.items()}
    files["renamed"] = (f"Copy of {layout.NOTEBOOK}", nbformat.writes(nbs["solution"]))  # as Colab names a copy
    files["empty"] = (layout.NOTEBOOK, "")
    files["not-json"] = (layout.NOTEBOOK, "<html>Sign in to Google Drive</html>")
    files["missing"] = None  # a folder without a notebook
    written = []
    for name, file in files.items():
        student = f"demo-{name}"
        folder = layout.submission_dir(course.submitted, student)
        if folder.parent.exists():
            if not (folder.parent / MARKER).exists():
                raise FileExistsError(f"{folder.parent} exists and is not a demo sample: refusing to overwrite it")
            shutil.rmtree(folder.parent)
        folder.mkdir(parents=True)
        (folder.parent / MARKER).write_text("made by `python -m coursekit samples`\n")
        if file is not None:
            (folder / file[0]).write_text(file[1], encoding="utf-8")
        written.append(student)
    return written
