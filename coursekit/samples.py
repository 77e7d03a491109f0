"""Demo submissions made from an assignment's instructor notebook, for `make demo` and the tests.

Each sample is what a student could hand in: the release notebook with answers written in (the
instructor's, or the typical mistakes its catalogue names as DEMO_MISTAKES), untouched, or a damaged file.
They go into submitted/demo-<name>/<assignment>/ and never overwrite a real student's folder.
"""

import shutil

import nbformat

from . import answers, catalogue, layout

MARKER = ".coursekit-sample"  # marks a folder made here, which a later run may replace


def mistakes(assignment: layout.Assignment) -> dict[str, str]:
    """The demo's wrong answers, keyed by exercise: the cells of the catalogue's DEMO_MISTAKES entries."""
    return {exercise: code for entry in catalogue.demo_mistakes(assignment) for exercise, code in entry.cells.items()}


def notebooks(course: layout.Course, assignment: layout.Assignment) -> dict[str, nbformat.NotebookNode]:
    """The gradable sample notebooks, by name: the full solution, the untouched release, typical mistakes."""
    source = nbformat.read(course.source_notebook(assignment), as_version=4)
    release = nbformat.read(course.release_notebook(assignment), as_version=4)
    solution = answers.solution_answers(source)
    return {
        "solution": answers.fill(release, solution),
        "untouched": release,
        "mistakes": answers.fill(release, {**solution, **mistakes(assignment)}),
    }


def write(course: layout.Course, assignment: layout.Assignment) -> list[str]:
    """Writes every sample of `assignment` under the course's submitted/; returns the student ids written."""
    nbs = notebooks(course, assignment)
    files = {name: (assignment.notebook, nbformat.writes(nb)) for name, nb in nbs.items()}
    files["renamed"] = (f"Copy of {assignment.notebook}", nbformat.writes(nbs["solution"]))  # as Colab names a copy
    files["empty"] = (assignment.notebook, "")
    files["not-json"] = (assignment.notebook, "<html>Sign in to Google Drive</html>")
    files["missing"] = None  # a folder without a notebook
    written = []
    for name, file in files.items():
        student = f"demo-{name}"
        folder = layout.submission_dir(course.submitted, student, assignment)
        if folder.parent.exists() and not (folder.parent / MARKER).exists():
            raise FileExistsError(f"{folder.parent} exists and is not a demo sample: refusing to overwrite it")
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (folder.parent / MARKER).write_text("made by `python -m coursekit samples`\n")
        if file is not None:
            (folder / file[0]).write_text(file[1], encoding="utf-8")
        written.append(student)
    return written
