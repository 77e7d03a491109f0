"""The dropout checks of CausalSelfAttention in training mode judge values the grader computes itself.

An output in training mode is random, so no reference can equal it; the checks therefore feed the module sequences
of one token, where each head has a single attention weight: dropout on the weights keeps a head's output (× 2 for
p = 0.5) or drops it whole, and dropout on the output then zeroes each value or doubles it. The grader recomputes
every head's values with its own inputs and the projections the check set, and finds how the output is made of
them (tests below: right layouts pass, every other output fails with its own reason, whatever the kernel sends)."""

import nbformat
import pytest
import torch

from coursekit import layout, scoring
from assignments import PW2

SALT = 424242
WEIGHTS, OUTPUT = "dropout on the attention weights", "dropout on the output"


@pytest.fixture(scope="module")
def checks():
    """The grader's copy of the checks, and its reference data for the training-mode probe on the drawn inputs."""
    grader = scoring.Grader(nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4))
    entries = grader.checks_of("test_CausalSelfAttention").entries
    references = grader.references_of("test_CausalSelfAttention", SALT)
    index = [e[0] for e in entries].index(WEIGHTS)
    status, reference = references[index]
    assert status == "ok"
    ns = grader.namespace

    def judge(description, trained):
        """None when the check passes on this training-mode output; its reason otherwise."""
        compare = {WEIGHTS: ns["_attention_weights_dropout"], OUTPUT: ns["_attention_output_dropout"]}[description]
        try:
            compare({"trained": trained}, reference)
        except AssertionError as error:
            return str(error)
        return None

    return judge, reference


def _made(reference, heads=None, output=None, values=None):
    """A training-mode output built from the check's own one-token inputs: each head's value times `heads` (B, 4),
    through the output projection, times `output` (B, 16); `values` multiplies the values one by one instead."""
    x, (_, _, v, o) = reference["x"].reshape(-1, 16), reference["weights"]
    head_values = (x @ v).view(-1, 4, 4)
    if heads is not None:
        head_values = head_values * heads[:, :, None]
    if values is not None:
        head_values = head_values * values.view(-1, 4, 4)
    y = head_values.reshape(-1, 16) @ o
    return (y if output is None else y * output).view(-1, 1, 16)


def _kept(shape, seed, scale=2.0):
    """Dropout 0.5's factors: 0 or `scale`, half each."""
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.5).float() * scale


def test_the_solutions_output_in_training_mode_passes_both(checks):
    judge, reference = checks
    assert judge(WEIGHTS, reference["trained"]) is None
    assert judge(OUTPUT, reference["trained"]) is None


def test_a_module_of_any_layout_with_both_dropouts_passes(checks):
    """Made here with its own masks, not the solution's (a fused, per-head or torch layout draws them in its order)."""
    judge, reference = checks
    trained = _made(reference, heads=_kept((64, 4), 1), output=_kept((64, 16), 2))
    assert judge(WEIGHTS, trained) is None and judge(OUTPUT, trained) is None


@pytest.mark.parametrize("name, build, weights_reason, output_reason", [
    ("no dropout", lambda r: _made(r), "no dropout in training mode", "about 50% of the outputs should be zeroed"),
    ("output's dropout only", lambda r: _made(r, output=_kept((64, 16), 3)), "only the output's dropout changes it",
     None),
    ("weights' dropout only", lambda r: _made(r, heads=_kept((64, 4), 4)), None,
     "about 50% of the outputs should be zeroed"),
    ("every head kept and doubled", lambda r: _made(r, heads=torch.full((64, 4), 2.0), output=_kept((64, 16), 5)),
     "0% were", None),
    ("dropout on the values, not the weights", lambda r: _made(r, values=_kept((64, 16), 6), output=_kept((64, 16), 7)),
     "should be attention computed with the projections the check set", "should be attention computed"),
    ("dropout without the 1 / (1 - p) scaling", lambda r: _made(r, heads=_kept((64, 4), 8, 1.0),
                                                                 output=_kept((64, 16), 9, 1.0)),
     "should be attention computed", "should be attention computed"),
])
def test_each_other_output_in_training_mode_fails_with_its_own_reason(checks, name, build, weights_reason, output_reason):
    judge, reference = checks
    trained = build(reference)
    for description, reason in ((WEIGHTS, weights_reason), (OUTPUT, output_reason)):
        found = judge(description, trained)
        if reason is None:
            assert found is None, (name, description, found)
        else:
            assert found is not None and reason in found, (name, description, found)


@pytest.mark.parametrize("name, trained", [
    ("zeros", torch.zeros(64, 1, 16)),
    ("NaN", torch.full((64, 1, 16), float("nan"))),
    ("random numbers, half of them zero", torch.randn(64, 1, 16) * _kept((64, 1, 16), 10)),
    ("the wrong shape", torch.zeros(64, 16)),
])
def test_forged_outputs_earn_neither_point(checks, name, trained):
    judge, _ = checks
    assert judge(WEIGHTS, trained) is not None and judge(OUTPUT, trained) is not None, name


def test_an_honest_output_on_other_inputs_earns_neither_point(checks):
    """The notebook's own inputs (salt 0) replayed as the answer for the drawn ones: the grader's values differ."""
    judge, reference = checks
    own = dict(reference, x=reference["x"].roll(1, 0))  # the same module on other inputs
    trained = _made(own, heads=_kept((64, 4), 11), output=_kept((64, 16), 12))
    assert judge(WEIGHTS, trained) is not None and judge(OUTPUT, trained) is not None
