"""Every assignment's catalogue (source_text/<assignment>/catalogue.py), graded through nbgrader exactly like a
student's hand-in: wrong answers lose points in their own exercise only, each lost point with a message that names
the mistake; correct answers written differently get full marks; grading the same answer again, on other drawn
inputs, gives the same points. And before hand-in, in the student's notebook: the public checks flag wrong answers in
their own exercise, never a correct one."""

import dataclasses

import nbformat
import pytest

from assignments import exercises, max_points
from coursekit import answers, catalogue, draws, layout, material

ASSIGNMENTS = catalogue.with_catalogue()
ENTRIES = [(a, e) for a in ASSIGNMENTS for e in catalogue.load(a)]
WRONG = [(a, e) for a, e in ENTRIES if not e.correct]
CORRECT = [(a, e) for a, e in ENTRIES if e.correct]


def ids(pairs):
    return [f"{a}: {e.name}" for a, e in pairs]


@pytest.fixture(scope="session")
def outcomes() -> dict[tuple[str, str], catalogue.EntryOutcome]:
    return {(a.name, o.entry.name): o for a in ASSIGNMENTS
            for o in catalogue.grade_entries(a, catalogue.load(a))}


def test_both_practicals_have_a_catalogue():
    assert [a.name for a in ASSIGNMENTS] == ["pw2_transformers", "pw3_decoding"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=str)
def test_the_catalogue_covers_every_exercise(assignment):
    wrong = [e for a, e in WRONG if a == assignment]
    correct = [e for a, e in CORRECT if a == assignment]
    assert len(wrong) >= 15 and len(correct) >= 6
    for exercise in exercises(assignment):
        assert any(exercise in e.cells for e in wrong), f"no wrong answer for {exercise}"
        assert any(exercise in e.cells for e in correct), f"no correct variant for {exercise}"


@pytest.mark.parametrize("assignment, entry", WRONG, ids=ids(WRONG))
def test_a_wrong_answer_loses_points_in_its_own_exercise_only(outcomes, assignment, entry):
    outcome = outcomes[assignment.name, entry.name]
    assert outcome.status == "graded"
    assert set(outcome.lost) == set(entry.cells), f"points lost: {outcome.lost}"


@pytest.mark.parametrize("assignment, entry", WRONG, ids=ids(WRONG))
def test_every_lost_point_comes_with_a_message_naming_the_mistake(outcomes, assignment, entry):
    outcome = outcomes[assignment.name, entry.name]
    for exercise, lost in outcome.lost.items():
        failures = outcome.failures.get(exercise, [])
        assert sum(f.points for f in failures) == lost, "every lost point is a failed check with its own line"
        assert all(f.reason for f in failures)
    reasons = " | ".join(f.reason for fs in outcome.failures.values() for f in fs)
    assert entry.expect in reasons, f"expected a message about {entry.expect!r}, got: {reasons}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=str)
def test_grading_names_the_mistake_of_at_least_90_percent_of_the_wrong_answers(outcomes, assignment):
    """Named: a failure message holds the words of the entry's mistake, not only a number. The catalogue includes
    mistakes no listed variant explains, which the checks name from what the code does (diagnosis by behaviour)."""
    wrong = [outcomes[assignment.name, e.name] for a, e in WRONG if a == assignment]
    named = [o for o in wrong if catalogue.named(o)]
    assert len(named) >= 0.9 * len(wrong), [o.entry.name for o in wrong if o not in named]


def test_the_catalogue_table_says_which_wrong_answers_are_named(outcomes):
    found = [o for (name, _), o in outcomes.items() if name == "pw2_transformers"]
    table = catalogue.table(found)
    row = next(line for line in table.splitlines() if line.endswith("  lm_loss: shifted the wrong way"))
    assert row.split()[-6] == "yes", row
    assert row.startswith("wrong") and "grading names the mistake of" in table.splitlines()[-1]
    broken = dataclasses.replace(outcomes["pw2_transformers", "lm_loss: shifted the wrong way"].entry, expect="no such words")
    outcome = dataclasses.replace(outcomes["pw2_transformers", "lm_loss: shifted the wrong way"], entry=broken)
    assert not catalogue.named(outcome) and "  no     lm_loss: shifted the wrong way" in catalogue.table([outcome])


@pytest.mark.parametrize("assignment, entry", CORRECT, ids=ids(CORRECT))
def test_a_correct_answer_written_differently_gets_full_marks(outcomes, assignment, entry):
    outcome = outcomes[assignment.name, entry.name]
    assert outcome.status == "graded"
    assert outcome.lost == {}, [f.reason for fs in outcome.failures.values() for f in fs]


REGRADED = [(a, student) for a in ASSIGNMENTS for student, group in catalogue.batch_of(a, catalogue.load(a)).items()
            if student in material.module(a, "catalogue").REGRADED
            or any(e.name in material.module(a, "catalogue").REGRADED for e in group)]


@pytest.mark.parametrize("assignment, student", REGRADED, ids=[f"{a}: {s}" for a, s in REGRADED])
def test_grading_the_same_answers_again_gives_the_same_points(outcomes, assignment, student):
    """The submissions whose grading involves randomness (dropout, sampling) or numerics close to the tolerance
    (REGRADED in the assignment's catalogue: entry names; "correct-<n>" for the groups of correct answers), judged
    again on 3 other draws of the grading inputs, as grading judges them (coursekit/draws.py): the same points in every
    exercise as the batch above gave them, on every draw."""
    group = catalogue.batch_of(assignment, catalogue.load(assignment))[student]
    source = nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)
    full = {answers.exercise_of(t): p for t, p in answers.test_points(source).items()}
    found = draws.judge(source, {k: v for e in group for k, v in e.cells.items()}, 3)
    for entry in group:
        graded = outcomes[assignment.name, entry.name]
        for exercise in entry.cells:
            assert found.points[exercise] == {full[exercise] - graded.lost.get(exercise, 0.0): 3}, (
                entry.name, exercise, dict(found.points[exercise]), graded.lost)


PUBLIC = [(a, e) for a, e in WRONG if not e.hidden_only]


@pytest.mark.parametrize("assignment, entry", PUBLIC, ids=ids(PUBLIC))
def test_a_wrong_answer_fails_a_public_check_of_its_own_exercise_before_hand_in(outcomes, assignment, entry):
    outcome = outcomes[assignment.name, entry.name]
    assert set(outcome.public) & set(entry.cells), f"no public check flags it (public failures: {outcome.public})"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=str)
def test_the_public_checks_flag_at_least_85_percent_of_the_wrong_answers(outcomes, assignment):
    wrong = [e for a, e in WRONG if a == assignment]
    flagged = [e for e in wrong if set(outcomes[assignment.name, e.name].public) & set(e.cells)]
    assert len(flagged) >= 0.85 * len(wrong), f"{len(flagged)} of {len(wrong)}"


@pytest.mark.parametrize("assignment, entry", CORRECT, ids=ids(CORRECT))
def test_no_public_check_flags_a_correct_answer(outcomes, assignment, entry):
    assert outcomes[assignment.name, entry.name].public == {}


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=str)
def test_an_answer_the_public_checks_call_all_passing_scores_at_least_90_percent(outcomes, assignment):
    for (name, _), outcome in outcomes.items():
        if name == assignment.name and not outcome.public:
            assert max_points(assignment) - sum(outcome.lost.values()) >= 0.9 * max_points(assignment), \
                outcome.entry.name
