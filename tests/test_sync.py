"""source/, source_text/, release/ and solutions/ agree: regenerating the derived ones changes nothing."""

import nbformat

from conftest import tree_digest
from coursekit import layout, notebook_text
from assignments import PW2


def test_source_notebook_matches_its_text_twin():
    committed = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    assert notebook_text.same_cells(committed, notebook_text.notebook_from_text(PW2.text_twin)), (
        "source/ and source_text/ differ: run `make notebook` (or `make notebook-text` after editing in Jupyter)")


def test_source_notebook_is_committed_clean():
    committed = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    assert committed == notebook_text.clean(committed), "outputs or extra metadata in source/: run `make notebook`"
    assert committed.metadata["kernelspec"]["name"] == "python3", "nbgrader 0.9's autograde needs a kernelspec"


def test_text_twin_round_trips():
    nb = notebook_text.notebook_from_text(PW2.text_twin)
    assert PW2.text_twin.read_text() == notebook_text.text_from_notebook(nb)


def test_release_is_regenerated_identically(course):
    assert tree_digest(course.root / "release") == tree_digest(layout.ROOT / "release"), (
        "release/ is stale: run `make release` and commit it")


def test_solutions_are_regenerated_identically(course):
    assert tree_digest(course.root / "solutions") == tree_digest(layout.ROOT / "solutions"), (
        "solutions/ is stale: run `make solutions` and commit it")


def test_solutions_hold_the_answers_but_not_the_hidden_tests():
    text = layout.COURSE.solution_notebook(PW2).read_text()
    assert "def lm_loss" in text and "F.cross_entropy(predictions[is_real], targets[is_real])" in text
    assert "HIDDEN TESTS" not in text and "_ref_attention" not in text
