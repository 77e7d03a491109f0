"""A wrong answer fails the same way on every draw of the grading inputs.

Grading draws the inputs of every check anew for each hand-in, so an answer whose checks pass on some draws only would
get different points for the same code. coursekit/draws.py judges answers on several draws in this process; these
tests run it on the catalogue entries that once depended on the draw (each fixed since), and show that it notices an
answer whose points do depend on it."""

from unittest import mock

import nbformat
import pytest
import torch

from assignments import PW2, PW3
from coursekit import answers, catalogue, draws, layout

DRAWS = 4

# Entries whose points once changed from one draw to the next: the check that decided their points passed on some
# drawn inputs (large scores that didn't overflow, a sampled token equal to the greedy one, a crop that happened to
# keep the token that mattered, gradients that stayed under the clipping norm, an EOS id that was never padding).
ONCE_VARYING = {
    PW2: ["self_attention: no scaling", "lm_loss: padding masked by the EOS id",
          "train_step: clip_grad_value_ instead of the norm", "decode: first position instead of the last",
          "decode: not in eval mode", "decode: sampling instead of greedy", "decode: context cropped one token short"],
}


def _source(assignment):
    return nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)


def _worth(assignment):
    """exercise -> the points its test cell is worth."""
    return {answers.exercise_of(g): p for g, p in answers.test_points(_source(assignment)).items()}


def _entry(assignment, name):
    found = [e for e in catalogue.load(assignment) if e.name == name]
    assert found, f"{name!r} is no longer in {assignment}'s catalogue: update ONCE_VARYING"
    return found[0]


@pytest.mark.parametrize("name", ONCE_VARYING[PW2])
def test_a_once_varying_wrong_answer_loses_the_same_points_on_every_draw(name):
    entry = _entry(PW2, name)
    found = draws.judge(_source(PW2), entry.cells, DRAWS)
    assert found.varying() == {}, f"{name}: points by draw {found.varying()}"
    for exercise, points in found.points.items():
        assert sum(points.values()) == DRAWS
        (only,) = points
        assert only < _worth(PW2)[exercise], f"{name} should lose points in {exercise}, got {only}"


def test_the_solution_gets_full_marks_on_every_draw():
    source = _source(PW3)
    solution = {k: v for k, v in answers.solution_answers(source).items() if k in ("sample", "top_p_filter")}
    found = draws.judge(source, solution, 3)
    assert found.varying() == {}
    assert {e: list(c) for e, c in found.points.items()} == {e: [_worth(PW3)[e]] for e in solution}


def test_an_answer_whose_points_depend_on_the_draw_is_found():
    """A top_k_filter that is right only when the grading salt is even: the points alternate with the salt."""
    source = _source(PW3)
    right = answers.solution_answers(source)["top_k_filter"]
    flaky = right + "\n_right_top_k_filter = top_k_filter\n" + (
        "def top_k_filter(logits, k):\n"
        "    if Checks.grading_salt % 2:\n"
        "        return logits\n"
        "    return _right_top_k_filter(logits, k)\n")
    salts = iter([2, 3, 4, 5, 6, 7, 8, 9] * 20)
    with mock.patch.object(draws.secrets, "randbelow", lambda _: next(salts) - 1):
        found = draws.judge(source, {"top_k_filter": flaky}, 4)
    assert list(found.varying()) == ["top_k_filter"]
    low, high = found.varying()["top_k_filter"]
    assert low < high


# A draw whose input to Block's zero-sub-layer check has a nearly constant position (variance 0.0017 over its 4
# features): normalizing it once or twice then gives different numbers (the layer norm's eps weighs on it).
NEARLY_CONSTANT_SALT = 9592


@pytest.mark.parametrize("name, points", [("Block: post-norm without the last layer norm", 1), ("Block: post-norm", 10)])
def test_a_block_with_its_residual_connections_earns_the_residual_check_on_a_nearly_constant_input(name, points):
    """With sub-layers that return 0, a Block with both residual connections returns its input normalized once (the
    post-norm Block missing its last layer norm) or twice (post-norm): each earns the residual check on every draw,
    also on one whose input has a position of nearly equal features."""
    g = torch.Generator().manual_seed(2 * 1_000_003 + NEARLY_CONSTANT_SALT)
    x = torch.randn(1, 2, 4, generator=g) * 2.0
    assert x.var(-1, unbiased=False).min() < 0.002  # the draw still makes the input this test is about
    with mock.patch.object(draws.secrets, "randbelow", lambda _: NEARLY_CONSTANT_SALT - 1):
        found = draws.judge(_source(PW2), _entry(PW2, name).cells, 1)
    assert dict(found.points["Block"]) == {points: 1}


# Rare coincidences: a wrong answer that passes a check on a small share of draws only (0.5% or 2% here) is missed by
# a few judged draws, but over a term, or over the catalogue's ~150 entries graded again on every test run, it gives
# the same code different points. These checks are designed so that the mistake shows on every draw; each test below
# failed on its 2,000 draws before its inputs were redesigned (first text's loss set apart; large scores with a
# feature that keeps the weights away from uniform and from one-hot).

def _check_cell_namespace(assignment, test_cell):
    """A kernel-like namespace with the instructor's answers and the functions of check cell `test_cell`."""
    import ast

    source = _source(assignment)
    namespace = draws.kernel_namespace(source, {})
    cell = next(c for c in source.cells if answers.grade_id(c) == test_cell)
    tree = ast.parse(cell.source.replace("### BEGIN HIDDEN TESTS", "").replace("### END HIDDEN TESTS", ""))
    tree.body = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Assign))
                 and not (isinstance(node, ast.Assign) and "checks" in ast.unparse(node.targets[0]))]
    exec(compile(tree, test_cell, "exec"), namespace)
    return namespace


def _coincidences(namespace, inputs, right, wrong, draws_count=2000):
    """On how many of `draws_count` draws `wrong` gives the same data as `right` on `inputs()` (as grading compares)."""
    from coursekit import notebook_checks

    found = 0
    for salt in range(1, draws_count + 1):
        namespace["Checks"].salt = salt * 7_919
        try:
            notebook_checks.same_data(wrong(*inputs()), right(*inputs()))
            found += 1
        except AssertionError:
            pass
    namespace["Checks"].salt = 0
    return found


def test_a_wrongly_scaled_attention_differs_on_every_draw_of_the_large_score_inputs():
    import math

    namespace = _check_cell_namespace(PW2, "test_self_attention")

    def scaled_by_the_value_size(S, W_Q, W_K, W_V):
        Q, K, V = S @ W_Q, S @ W_K, S @ W_V
        return (Q @ K.transpose(-2, -1) / math.sqrt(V.shape[-1])).softmax(dim=-1) @ V

    assert _coincidences(namespace, namespace["_public_large_score_inputs"], namespace["self_attention"],
                         scaled_by_the_value_size) == 0


def test_a_loss_averaged_per_text_differs_on_every_draw_of_the_padded_batches():
    namespace = _check_cell_namespace(PW2, "test_lm_loss")

    def mean_per_row(logits, input_ids, attention_mask):
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
        mask = attention_mask[:, 1:].float()
        return ((losses * mask).sum(1) / mask.sum(1)).mean()

    for inputs in (namespace["_public_padded_batch"], lambda: namespace["_loss_inputs"](110),
                   lambda: tuple(x * (1000 if i == 0 else 1) for i, x in enumerate(namespace["_public_padded_batch"]()))):
        assert _coincidences(namespace, inputs, namespace["lm_loss"], mean_per_row) == 0
