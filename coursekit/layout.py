"""Where everything lives in the course directory (paths are relative to the repository root)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "pw2_transformers"
NOTEBOOK_ID = ASSIGNMENT  # one notebook, named after the assignment
NOTEBOOK = f"{NOTEBOOK_ID}.ipynb"

SOURCE_TEXT = ROOT / "source_text" / f"{ASSIGNMENT}.py"
SOURCE_NOTEBOOK = ROOT / "source" / ASSIGNMENT / NOTEBOOK
RELEASE_NOTEBOOK = ROOT / "release" / ASSIGNMENT / NOTEBOOK
SOLUTION_NOTEBOOK = ROOT / "solutions" / ASSIGNMENT / NOTEBOOK
SUBMITTED = ROOT / "submitted"
AUTOGRADED = ROOT / "autograded"
FEEDBACK = ROOT / "feedback"
REPORTS = ROOT / "reports"
# Copies of the gradable submissions, normalised, that nbgrader autogrades: submitted/ itself is never written.
STAGING = ROOT / "build" / "intake"
GRADEBOOK = ROOT / "gradebook.db"


def submission_dir(submitted: Path, student: str) -> Path:
    """The folder that holds one student's hand-in: submitted/<student>/<assignment>/."""
    return submitted / student / ASSIGNMENT
