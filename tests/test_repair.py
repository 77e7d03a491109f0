"""Hand-ins damaged by Colab or by hand are repaired against the release, graded as if pristine, and the
repairs are reported; a damaged hand-in never stops the batch."""

import time

import nbformat
import pytest

import handins
from coursekit import answers, repair


@pytest.fixture(scope="module")
def solution(source_nb, release_nb):
    return answers.fill(release_nb, answers.solution_answers(source_nb))


def test_an_intact_hand_in_is_left_as_it_is(solution, release_nb):
    repaired, notes = repair.repair(solution, release_nb)
    assert repaired == solution and notes == []


def test_a_colab_save_is_graded_as_the_pristine_notebook(solution, release_nb):
    for text in (handins.colab_saved(solution), handins.colab_saved_old_format(solution)):
        repaired, notes = repair.repair(nbformat.reads(text, as_version=4), release_nb)
        cells = [c for c in repaired.cells if not c.source.startswith('<a href="https://colab.research.google.com/')]
        assert len(cells) == len(repaired.cells) - 1, "Colab's badge cell is kept as an extra cell"
        assert cells == solution.cells and repaired.metadata == release_nb.metadata
        assert "Ada Lovelace" not in nbformat.writes(repaired) and notes == []


def test_lost_metadata_is_restored_by_content(solution, release_nb):
    repaired, notes = repair.repair(handins.metadata_lost(solution), release_nb)
    assert repaired == solution
    assert notes and "metadata restored" in notes[0]


def test_a_duplicated_test_cell_is_dropped_and_a_duplicated_exercise_keeps_its_last_copy(solution, release_nb):
    damaged = handins.duplicated(solution, "test_Block", "lm_loss")
    lm_loss = next(c for c in damaged.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "lm_loss")
    damaged.cells[damaged.cells.index(lm_loss) + 1].source += "\n# my second try\n"
    repaired, notes = repair.repair(damaged, release_nb)
    graded_ids = [c.metadata["nbgrader"]["grade_id"] for c in repaired.cells if "nbgrader" in c.metadata]
    assert len(graded_ids) == len(set(graded_ids)), "each graded cell appears once"
    answer = next(c for c in repaired.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "lm_loss")
    assert answer.source.endswith("# my second try\n")
    assert "duplicated cells: lm_loss, test_Block" in notes[0]


def test_deleted_reordered_and_edited_cells_come_back_as_released(solution, release_nb):
    for damaged, said in [(handins.deleted(solution, "test_Block", "grading_helpers"), "deleted cells put back"),
                          (handins.moved_to_end(solution, "FeedForward", "test_FeedForward"), "released order"),
                          (handins.edited(solution, "test_lm_loss", "15"), "edited locked cells restored")]:
        repaired, notes = repair.repair(damaged, release_nb)
        assert repaired == solution and any(said in n for n in notes), notes


def test_the_students_own_cells_are_kept_after_the_cell_they_followed(solution, release_nb):
    repaired, notes = repair.repair(handins.inserted_after(solution, "self_attention", "def helper():\n    return 1\n"),
                                    release_nb)
    ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in repaired.cells]
    extra = next(i for i, c in enumerate(repaired.cells) if c.source.startswith("def helper"))
    assert ids[extra - 1] == "self_attention" and "nbgrader" not in repaired.cells[extra].metadata and notes == []


def test_the_students_own_cells_never_run_before_the_grading_helpers(solution, release_nb):
    repaired, _ = repair.repair(handins.inserted_after(solution, "imports", "torch.allclose = None\n"), release_nb)
    ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in repaired.cells]
    extra = next(i for i, c in enumerate(repaired.cells) if c.source.startswith("torch.allclose"))
    assert ids[extra - 1] == "grading_helpers"


def test_tags_are_dropped_and_reported(release_nb):
    repaired, notes = repair.repair(handins.tagged(release_nb, "skip-execution"), release_nb)
    assert repaired == release_nb and notes == ["cell tags ignored: skip-execution"]


@pytest.mark.parametrize("student", ["colab-saved", "colab-old-format", "metadata-lost", "duplicated-cells", "deleted-tests",
                                     "reordered", "edited-tests", "extra-cells"])
def test_a_damaged_solution_still_gets_full_marks(graded, student):
    result = graded.results[student]
    assert result.status == "graded" and result.score == 100, (result.status, result.score, result.note)


def test_repairs_are_reported_in_the_grading_report(graded):
    assert "Copy of pw2_transformers.ipynb" in graded.results["colab-saved"].note
    assert "metadata restored" in graded.results["metadata-lost"].note
    assert "duplicated cells" in graded.results["duplicated-cells"].note
    assert "deleted cells put back: grading_helpers, test_Block, test_decode" in graded.results["deleted-tests"].note


def test_skip_execution_tags_earn_nothing(graded):
    result = graded.results["skip-tagged-release"]
    assert result.score == 0 and "skip-execution" in result.note


def test_near_copies_of_a_long_cell_stop_content_matching_at_its_limit_and_the_answers_are_still_graded(solution, release_nb):
    damaged = handins.metadata_lost(handins.near_copies(solution, "grading_helpers", 30))
    start = time.monotonic()
    repaired, notes = repair.repair(damaged, release_nb)
    assert time.monotonic() - start < 20  # 5-7 s here; 45 s without the budget (1.5 s per full comparison)
    assert any(n.startswith("content matching reached its work limit") for n in notes), notes
    answers_of = lambda nb: {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells  # noqa: E731
                             if c.metadata.get("nbgrader", {}).get("solution")}
    assert answers_of(repaired) == answers_of(solution), "exercises are found by their definitions, not by difflib"


def test_a_cell_too_long_to_compare_is_kept_as_the_students_and_said(release_nb):
    long_cell = nbformat.v4.new_markdown_cell("notes " * (repair.FUZZY_MAX_CHARS // 5))
    repaired, notes = repair.repair(nbformat.v4.new_notebook(cells=[*release_nb.cells, long_cell]), release_nb)
    assert repaired.cells[-1].source == long_cell.source
    assert "1 cells too long to compare by content (over 100 kB)" in " ".join(notes)


def test_definitions_are_found_in_linear_time_in_a_cell_of_a_hundred_thousand_decorator_lines(release_nb):
    cell = nbformat.v4.new_code_cell("@\n" * 100_000 + "def self_attention(S, W_Q, W_K, W_V):\n    return S\n")
    start = time.monotonic()
    repaired, _ = repair.repair(nbformat.v4.new_notebook(cells=[cell]), release_nb)
    assert time.monotonic() - start < 10  # milliseconds; two minutes with the former pattern
    assert any(c.source == cell.source and c.metadata["nbgrader"]["grade_id"] == "self_attention" for c in repaired.cells)
