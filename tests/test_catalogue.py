"""Every catalogue entry (tests/catalogue.py), graded through nbgrader exactly like a student's hand-in:
wrong answers lose points in their own exercise only, each lost point with a message that names the
mistake; correct answers written differently get full marks; grading the same answer twice gives the
same score. And before hand-in, in the student's notebook: the public checks flag wrong answers in their own
exercise, never a correct one."""

import pytest

from coursekit import catalogue

ENTRIES = catalogue.load()
WRONG = [e for e in ENTRIES if not e.correct]
CORRECT = [e for e in ENTRIES if e.correct]
EXERCISES = ["self_attention", "multi_head_attention", "causal_multi_head_attention", "CausalSelfAttention",
             "FeedForward", "Block", "Transformer", "lm_loss", "train_step", "decode"]

# Answers whose grading involves randomness (dropout, sampling) or numerics close to the tolerance.
REGRADED = ["correct-1", "correct-2", "correct-3"] + [catalogue.student_id(e) for e in WRONG if e.name in {
    "CausalSelfAttention: no dropout on the attention weights", "FeedForward: no dropout", "decode: not in eval mode",
    "decode: sampling instead of greedy", "train_step: no clipping", "causal: masked with 0 instead of -inf"}]


@pytest.fixture(scope="session")
def outcomes() -> dict[str, catalogue.Outcome]:
    return {o.entry.name: o for o in catalogue.grade(ENTRIES)}


def test_the_catalogue_covers_every_exercise():
    assert len(WRONG) >= 40 and len(CORRECT) >= 15
    for exercise in EXERCISES:
        assert any(exercise in e.cells for e in WRONG), f"no wrong answer for {exercise}"
        assert any(exercise in e.cells for e in CORRECT), f"no correct variant for {exercise}"


@pytest.mark.parametrize("entry", WRONG, ids=[e.name for e in WRONG])
def test_a_wrong_answer_loses_points_in_its_own_exercise_only(outcomes, entry):
    outcome = outcomes[entry.name]
    assert outcome.status == "graded"
    assert set(outcome.lost) == set(entry.cells), f"points lost: {outcome.lost}"


@pytest.mark.parametrize("entry", WRONG, ids=[e.name for e in WRONG])
def test_every_lost_point_comes_with_a_message_naming_the_mistake(outcomes, entry):
    outcome = outcomes[entry.name]
    for exercise, lost in outcome.lost.items():
        failures = outcome.failures.get(exercise, [])
        assert sum(f.points for f in failures) == lost, "every lost point is a failed check with its own line"
        assert all(f.reason for f in failures)
    reasons = " | ".join(f.reason for fs in outcome.failures.values() for f in fs)
    assert entry.expect in reasons, f"expected a message about {entry.expect!r}, got: {reasons}"


@pytest.mark.parametrize("entry", CORRECT, ids=[e.name for e in CORRECT])
def test_a_correct_answer_written_differently_gets_full_marks(outcomes, entry):
    outcome = outcomes[entry.name]
    assert outcome.status == "graded"
    assert outcome.lost == {}, [f.reason for fs in outcome.failures.values() for f in fs]


def test_grading_the_same_answers_again_gives_the_same_scores(outcomes):
    again = catalogue.grade(ENTRIES, students=REGRADED)
    assert len(again) >= 9
    for outcome in again:
        assert outcome.lost == outcomes[outcome.entry.name].lost, outcome.entry.name
        assert outcome.failures == outcomes[outcome.entry.name].failures, outcome.entry.name


@pytest.mark.parametrize("entry", [e for e in WRONG if not e.hidden_only], ids=[e.name for e in WRONG if not e.hidden_only])
def test_a_wrong_answer_fails_a_public_check_of_its_own_exercise_before_hand_in(outcomes, entry):
    outcome = outcomes[entry.name]
    assert set(outcome.public) & set(entry.cells), f"no public check flags it (public failures: {outcome.public})"


def test_the_public_checks_flag_at_least_85_percent_of_the_wrong_answers(outcomes):
    flagged = [e for e in WRONG if set(outcomes[e.name].public) & set(e.cells)]
    assert len(flagged) >= 0.85 * len(WRONG), f"{len(flagged)} of {len(WRONG)}"


@pytest.mark.parametrize("entry", CORRECT, ids=[e.name for e in CORRECT])
def test_no_public_check_flags_a_correct_answer(outcomes, entry):
    assert outcomes[entry.name].public == {}


def test_an_answer_the_public_checks_call_all_passing_scores_at_least_90(outcomes):
    for outcome in outcomes.values():
        if not outcome.public:
            assert 100 - sum(outcome.lost.values()) >= 90, outcome.entry.name
