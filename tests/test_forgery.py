"""A grade cannot be forged from the student's kernel: the points are computed by the grader, outside it, from the
plain data the checks' probes return, and the kernel never holds the references, the expected values or the verdicts.

Every attack of attacks.py is graded in the session's batch (conftest.py), added to honest work that has three
mistakes (demo-mistakes: self_attention, lm_loss and decode lose points). Each attack is judged by what it got.
"""

import html

import nbformat
import pytest

import attacks
from conftest import autograded_notebook, grader_only_names
from coursekit import answers, layout, notebook_checks, scoring
from assignments import PW2

HONEST = "demo-mistakes"
# Attacks on what the kernel displays, on the score it keeps, on the values it compares: the probes still run.
FORGERS = ["forge-suppressed-display", "forge-numbers-as-text", "forge-profiler-and-thread", "forge-append-full-marks",
           "forge-lying-tensor", "forge-gc-search"]
# Attacks that replace the checks themselves, or their data: the grader then has no honest data to judge.
SABOTEURS = ["forge-fake-checks", "forge-patched-engine", "forge-rewrite-check-cells", "forge-probe-data"]


def _printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_the_honest_work_the_attacks_are_added_to_has_three_mistakes(graded):
    honest = graded.results[HONEST]
    assert honest.status == "graded" and 50 < honest.score < 100
    assert {e for e, p in honest.exercises.items() if p < graded.results["demo-solution"].exercises[e]} == \
        {"self_attention", "lm_loss", "decode"}


@pytest.mark.parametrize("student", FORGERS)
def test_a_forged_grade_gets_exactly_the_honest_score(graded, student):
    result = graded.results[student]
    assert result.status == "graded", result.note
    assert result.exercises == graded.results[HONEST].exercises


@pytest.mark.parametrize("student", SABOTEURS)
def test_replacing_the_checks_or_their_data_earns_nothing(graded, student):
    """Fake checks, a patched engine and rewritten check cells send no probe data, so the checks get no answer;
    forged probe data (sent before the real data, so that it counts) fails the grader's verdicts. Never more than the
    honest score, in any exercise."""
    result, honest = graded.results[student], graded.results[HONEST]
    assert result.status == "graded" and result.score < honest.score
    assert all(points <= honest.exercises[e] for e, points in result.exercises.items())
    printed = _printed(autograded_notebook(graded, student))
    if student == "forge-probe-data":
        assert "wrong output" in printed or "should have shape" in printed
    else:
        assert result.score == 0 and "no answer from your code for this check" in printed


def test_printed_check_lines_and_displayed_scores_count_for_nothing(graded):
    """What the kernel printed or displayed in a check cell is replaced by the grader's own lines and points."""
    nb = autograded_notebook(graded, "forge-append-full-marks")
    test_cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_self_attention")
    assert [o.output_type for o in test_cell.outputs] == ["stream", "execute_result"]
    assert test_cell.outputs[1].data["text/plain"] == f"{graded.results[HONEST].exercises['self_attention']:g}" == "0"
    assert "✗ values match softmax(Q Kᵀ / √d_k) V [0/3]: wrong output: the scores are not scaled" in test_cell.outputs[0].text


def test_the_kernel_holds_nothing_of_the_grader(graded, source_nb):
    """gc, every frame's globals and the notebook's namespace hold no reference, expected value or verdict."""
    printed = _printed(autograded_notebook(graded, "forge-gc-search"))
    assert "grader things found: []" in printed
    assert len(grader_only_names(source_nb)) > 40


def test_the_gc_search_would_find_the_references_where_they_are(source_nb):
    """The attack's search is not blind: run in the grader's own namespace, it finds the references."""
    grader = scoring.Grader(source_nb)
    for grade_id in grader.test_cells:
        grader.checks_of(grade_id)
    namespace = grader.namespace
    exec(f"GRADER_NAMES = {grader_only_names(source_nb)!r}\n" + attacks.GC_SEARCH_ANSWER, namespace)
    found = namespace["_grader_things"]()
    assert {"_ref_lm_loss", "_attend", "verdict_loss_value"} <= set(found)


def test_student_code_never_sees_a_grader_only_cell(graded, source_nb):
    """Neither the released notebook nor any graded one has a line of the grader-only cells (but lines the student's
    own hand-in also has, such as a decode loop written like the reference's)."""
    elsewhere = "\n".join(c.source for c in source_nb.cells if not scoring.is_grader_only(c))
    grader_lines = {line.strip() for c in source_nb.cells if scoring.is_grader_only(c)
                    for line in c.source.splitlines() if len(line.strip()) > 25 and line.strip() not in elsewhere}
    assert len(grader_lines) > 150
    release = nbformat.read(graded.course.release_notebook(PW2), as_version=4)
    assert not [line for line in grader_lines if line in "\n".join(c.source for c in release.cells)]
    for student in ["leak-history", "leak-captured-cells"]:
        nb = autograded_notebook(graded, student)
        handed_in = nbformat.read(layout.submission_dir(graded.course.staging(PW2), student, PW2) / PW2.notebook, as_version=4)
        own = "\n".join(c.source for c in handed_in.cells)
        text = "\n".join(c.source for c in nb.cells) + _printed(nb)
        assert not [line for line in grader_lines if line in text and line not in own], student


@pytest.mark.parametrize("student", ["leak-history", "leak-captured-cells"])
def test_printing_the_input_history_or_the_cells_seen_shows_no_hidden_test(graded, source_nb, student):
    hidden = scoring.Grader(source_nb).hidden_lines()
    assert len(hidden) > 100
    printed = _printed(autograded_notebook(graded, student))
    assert not [line for line in hidden if line in printed]
    assert graded.results[student].exercises == graded.results[HONEST].exercises


def test_a_probe_raising_the_hidden_tests_source_leaks_no_line_of_it(graded, source_nb):
    """The answer raises the check cells' source, read from the kernel's line cache, a piece per call: the reasons
    are cut to one bounded line each, after every line of the hidden tests is removed from them."""
    release = "\n".join(c.source for c in nbformat.read(graded.course.release_notebook(PW2), as_version=4).cells)
    hidden = [line for line in scoring.Grader(source_nb).hidden_lines() if line not in release]  # public too: no secret
    nb = autograded_notebook(graded, "leak-in-reason")
    page = (layout.submission_dir(graded.course.feedback, "leak-in-reason", PW2) / f"{PW2.notebook_id}.html").read_text()
    printed = _printed(nb)
    assert "your code raised RuntimeError" in printed and scoring.REDACTED in printed  # the attack ran, and was redacted
    for text in (printed, page):
        assert not [line for line in hidden if line in text or html.escape(line) in text]
    # nor a piece of one, cut where the kernel chose: no 40 characters of a hidden line in the check lines
    check_lines = next(c for c in nb.cells if answers.grade_id(c) == "test_self_attention").outputs[0].text
    assert not [line for line in hidden for i in range(len(line) - 40) if line[i:i + 40] in check_lines]
    result, honest = graded.results["leak-in-reason"], graded.results[HONEST]
    assert result.exercises["self_attention"] == 0
    assert {e: p for e, p in result.exercises.items() if e != "self_attention"} == \
        {e: p for e, p in honest.exercises.items() if e != "self_attention"}


def test_captured_hidden_tests_are_removed_from_what_student_code_prints(graded):
    printed = _printed(autograded_notebook(graded, "leak-captured-cells"))
    assert scoring.REDACTED in printed, "the attack captured the check cells' source: the grader must have removed it"


def test_the_check_cells_are_not_in_the_kernels_history(graded):
    printed = _printed(autograded_notebook(graded, "leak-history"))
    assert "def self_attention(S, W_Q, W_K, W_V)" in printed, "the exercise cells are in the history"
    assert '"""Checks self_attention' not in printed and "cells in the history" in printed


def test_other_students_are_graded_as_if_alone(graded):
    """The attacks share the batch (and the workers) with everyone else: the honest grades stay what they are."""
    assert graded.results["demo-solution"].score == 100
    assert graded.results["demo-untouched"].score == 0
    assert all(graded.results[s].exercises == graded.results["demo-solution"].exercises
               for s in ["colab-saved", "metadata-lost", "sandbox-probe"])


def test_autograded_notebooks_carry_no_probe_data(graded):
    for student in [HONEST, "forge-probe-data"]:
        outputs = [o for c in autograded_notebook(graded, student).cells for o in c.get("outputs", [])]
        assert outputs and not [o for o in outputs if notebook_checks.PROBE_MIME in o.get("data", {})]
