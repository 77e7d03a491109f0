"""source/, source_text/, release/ and solutions/ agree: regenerating the derived ones changes nothing."""

import hashlib
import re

import nbformat
import pytest

from assignments import PW2
from conftest import tree_digest
from coursekit import layout, notebook_text

EVERY = pytest.mark.parametrize("assignment", layout.assignments(), ids=str)


def test_every_assignment_has_its_notebook_release_and_solution():
    assert [a.name for a in layout.assignments()] == ["pw2_transformers", "pw3_decoding"]
    assert layout.COURSE.assignments() == layout.assignments()
    for assignment in layout.assignments():
        assert layout.COURSE.release_notebook(assignment).is_file() and layout.COURSE.solution_notebook(assignment).is_file()


@EVERY
def test_source_notebook_matches_its_text_twin(assignment):
    committed = nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)
    assert notebook_text.same_cells(committed, notebook_text.notebook_from_text(assignment.text_twin)), (
        "source/ and source_text/ differ: run `make notebook` (or `make notebook-text` after editing in Jupyter)")


@EVERY
def test_source_notebook_is_committed_clean(assignment):
    committed = nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)
    assert committed == notebook_text.clean(committed), "outputs or extra metadata in source/: run `make notebook`"
    assert committed.metadata["kernelspec"]["name"] == "python3", "nbgrader 0.9's autograde needs a kernelspec"


@EVERY
def test_text_twin_round_trips(assignment):
    nb = notebook_text.notebook_from_text(assignment.text_twin)
    assert assignment.text_twin.read_text() == notebook_text.text_from_notebook(nb)


BADGE_TARGET = re.compile(r"https://colab\.research\.google\.com/github/[^)\"\s]*")


def release_digest(folder) -> dict[str, str]:
    """tree_digest, but for where each notebook's Colab badge points: at the GitHub repository that `make release`
    found (coursekit/colab.py), which a fresh release in a throwaway course, with no git remote, does not know."""
    digest = tree_digest(folder)
    for path in folder.rglob("*.ipynb"):
        text = BADGE_TARGET.sub("<the badge's address>", path.read_text(encoding="utf-8"))
        digest[str(path.relative_to(folder))] = hashlib.sha256(text.encode()).hexdigest()
    return digest


def test_release_is_regenerated_identically(course):
    assert release_digest(course.root / "release") == release_digest(layout.ROOT / "release"), (
        "release/ is stale: run `make release` and commit it")


def test_solutions_are_regenerated_identically(course):
    assert tree_digest(course.root / "solutions") == tree_digest(layout.ROOT / "solutions"), (
        "solutions/ is stale: run `make solutions` and commit it")


def test_solutions_hold_the_answers_but_not_the_hidden_tests():
    text = layout.COURSE.solution_notebook(PW2).read_text()
    assert "def lm_loss" in text and "F.cross_entropy(predictions[is_real], targets[is_real])" in text
    assert "HIDDEN TESTS" not in text and "_ref_attention" not in text
