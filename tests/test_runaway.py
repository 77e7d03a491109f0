"""Runaway code (infinite loops, huge outputs, memory hogs) costs only what it breaks, with a stated
reason, and the rest of the notebook and of the batch is graded as usual."""

from conftest import autograded_notebook
from coursekit import layout
from assignments import PW2


def test_an_infinite_loop_in_an_answer_costs_that_exercise_only(graded):
    result = graded.results["runaway-loop-in-answer"]
    full = graded.results["demo-solution"].exercises
    assert result.exercises["self_attention"] == 0
    assert {e: p for e, p in result.exercises.items() if e != "self_attention"} == \
        {e: p for e, p in full.items() if e != "self_attention"}
    printed = "".join(o.get("text", "") for c in autograded_notebook(graded, "runaway-loop-in-answer").cells
                      for o in c.get("outputs", []))
    assert "ran for more than 15 seconds: is there an infinite loop?" in printed
    assert "not run: an earlier check of this exercise ran out of time" in printed


def test_an_infinite_loop_in_a_cell_is_stopped_and_reported(graded):
    result = graded.results["runaway-loop-in-cell"]
    assert result.score == 100 and "ran out of time in a cell of the student's after FeedForward" in result.note


def test_a_huge_output_is_cut(graded):
    result = graded.results["runaway-output"]
    path = layout.submission_dir(graded.course.autograded, "runaway-output", PW2) / PW2.notebook
    assert result.score == 100
    assert path.stat().st_size < 2_000_000, "a 50 MB print must not make a 50 MB autograded notebook"
    assert "output cut: 50,000,001 characters printed" in path.read_text()


def test_a_memory_hog_fails_its_own_cell_only(graded):
    result = graded.results["runaway-memory"]
    assert result.score == 100
    errors = [o for c in autograded_notebook(graded, "runaway-memory").cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert errors and all("memory" in (o.ename + o.evalue).lower() for o in errors), [(o.ename, o.evalue) for o in errors]


def test_thousands_of_outputs_are_cut_at_the_cells_output_budget(graded):
    """6,000 outputs of 5,000 characters (30 MB) in one cell of the student's: the cell keeps its budget, says so,
    and the notebook is graded as usual."""
    result = graded.results["runaway-many-outputs"]
    path = layout.submission_dir(graded.course.autograded, "runaway-many-outputs", PW2) / PW2.notebook
    assert result.score == 100
    assert path.stat().st_size < 3_000_000
    assert "further output of this cell dropped: this cell's output budget (200,000 characters) is spent" in path.read_text()
