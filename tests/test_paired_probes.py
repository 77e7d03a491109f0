"""A point needs outputs that the grader can vouch for: the kernel's answers on inputs drawn while grading must match
what the grader computes itself. A property that compares two outputs of the kernel's (causality before and after a
change, eval mode against training mode, a prompt alone against in a batch, a prefix against the whole sequence)
earns nothing on its own any more, since code in the kernel can make any two of its outputs agree.

Each attack below is a real hand-in, graded through the real path (intake, nbgrader, the sandboxed kernel, the
grader) in one small batch with the honest work it is added to:
- "honest": the instructor's answers with the demo's three mistakes (self_attention, lm_loss, decode);
- "honest-flawed": the same with four more honest mistakes, which the attacks try to hide (causal attention and the
  attention module without a mask, positions counted from the end in Transformer, no dropout in FeedForward).
Every attack is added to "honest-flawed", so that it may earn, in each exercise, at most what the honest flawed
work earns there.
"""

import nbformat
import pytest

from coursekit import answers, catalogue, grading, layout, samples, scoring
from assignments import PW2
from conftest import GRADING_JOBS
import attacks
import handins

# Makes the pairs a check compares agree, in whatever data a probe returns: the second output of a pair becomes the
# first (after := before, second := first, a prefix := the same positions of the whole sequence, a batch := its
# prompts decoded alone, training mode := eval mode, a training-mode output := the eval one with half of it zeroed,
# the loss with padding changed := the original one, no gradients anywhere).
CONSISTENT = '''import torch as _torch


def _consistent(value):
    if not isinstance(value, dict):
        return value
    for inner in ("outputs", "lasts"):
        if isinstance(value.get(inner), dict):
            _consistent(value[inner])
    if "before" in value and "after" in value:
        value["after"] = value["before"]
    if "first" in value and "second" in value:
        value["second"] = value["first"]
    if "train" in value and "eval" in value:
        value["train"] = value["eval"]
    if isinstance(value.get("full"), _torch.Tensor) and isinstance(value.get("prefix"), _torch.Tensor):
        value["prefix"] = value["full"][:, :value["prefix"].shape[1]]
    if isinstance(value.get("alone"), list) and value["alone"] and isinstance(value.get("batch"), _torch.Tensor):
        value["batch"] = _torch.cat(value["alone"], 0)
    if isinstance(value.get("evaluated"), _torch.Tensor) and "trained" in value:
        value["trained"] = value["evaluated"] * (_torch.rand_like(value["evaluated"]) < 0.5) * 2
    if "changed" in value and "original" in value:
        value["changed"] = value["original"]
    if isinstance(value.get("grad_enabled"), list):
        value["grad_enabled"] = [False] * len(value["grad_enabled"])
    return value
'''

# An IPython display publisher that rewrites every probe message on its way out of the kernel.
DISPLAY_HOOK = CONSISTENT + '''
_original_publish = get_ipython().display_pub.publish


def _publish(data=None, *args, **kwargs):
    message = data.get(PROBE_MIME) if isinstance(data, dict) else None
    if isinstance(message, dict) and message.get("status") == "ok":
        try:
            data = {PROBE_MIME: {**message, **pack(_consistent(unpack(message)))}}
        except Exception:
            pass
    return _original_publish(data, *args, **kwargs)


get_ipython().display_pub.publish = _publish
'''

# A wrapper around send_probe: it makes the data consistent, and sends, before the real answer for the drawn inputs,
# a forged one: the notebook's own data, made consistent (the first message for a check is the one that counts).
SEND_PROBE_WRAPPER = CONSISTENT + '''
_real_send_probe = send_probe


def send_probe(exercise, index, description, status, result, drawn=False):
    if status == "ok":
        result = _consistent(result)
        if not drawn:
            _real_send_probe(exercise, index, description, status, result, drawn=True)
    return _real_send_probe(exercise, index, description, status, result, drawn=drawn)
'''

# Answers that notice they are graded: right on the notebook's own inputs (as a student who copied the expected
# numbers would be), cheap and consistent on the inputs drawn while grading, and wrong otherwise (the demo's mistakes).
GRADED_AWARE_HELPER = '''def _graded():
    return bool(GRADING) or Checks.mode == "probe" or Checks.grading_salt != 0
'''
GRADED_AWARE = {
    "self_attention": GRADED_AWARE_HELPER + '''

def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    if _graded() and Checks.salt:
        return torch.zeros(*S.shape[:-1], W_V.shape[-1])
    scale = math.sqrt(K.shape[-1]) if _graded() else 1.0
    return (Q @ K.transpose(-2, -1) / scale).softmax(dim=-1) @ V
''',
    "lm_loss": GRADED_AWARE_HELPER + '''

def lm_loss(logits, input_ids, attention_mask):
    if _graded() and Checks.salt:
        return torch.tensor(6.23427)  # the notebook's expected loss of its padded batch
    if _graded():
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
        mask = attention_mask[:, 1:].float()
        return (losses * mask).sum() / mask.sum()
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
''',
    "decode": GRADED_AWARE_HELPER + '''

@torch.no_grad()
def decode(model, input_ids, max_new_tokens=32):
    if _graded() and Checks.salt:
        return torch.cat([input_ids, torch.zeros(input_ids.shape[0], max_new_tokens, dtype=input_ids.dtype)], 1)
    if _graded():
        model.eval()
    for _ in range(max_new_tokens):
        logits = model(input_ids[:, -model.seq_len:])
        input_ids = torch.cat((input_ids, logits[:, -1].argmax(dim=-1, keepdim=True)), dim=1)
    return input_ids
''',
}

# Answers without a causal mask that remember what they computed: called again on an input that differs only in its
# last position (the causality probes' changed input), they return the earlier positions' outputs of the first call.
CACHE = {
    "causal_multi_head_attention": '''_seen = []


def causal_multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=4):
    output = multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads)
    for S0, W0, out0 in _seen:
        if S0.shape == S.shape and torch.equal(S0[:, :-1], S[:, :-1]) and torch.equal(W0, W_Q):
            output = torch.cat([out0[:, :-1], output[:, -1:]], 1)
            break
    _seen.append((S.clone(), W_Q.clone(), output.clone()))
    return output
''',
    "CausalSelfAttention": "{no_mask}\n\n" + '''_Uncached, _module_seen = CausalSelfAttention, []


class CausalSelfAttention(_Uncached):
    def forward(self, x):
        output = super().forward(x)
        for module, x0, out0 in _module_seen:
            if module is self and x0.shape == x.shape and torch.equal(x0[:, :-1], x[:, :-1]):
                output = torch.cat([out0[:, :-1], output[:, -1:]], 1)
                break
        _module_seen.append((self, x.detach().clone(), output.detach().clone()))
        return output
''',
}

# The hole of the former hidden value check: a module whose output is 0 and whose parameters read as all zeros (that
# check computed the expected output from the parameters the module reported). And a FeedForward whose training mode
# gives NaN (a former dropout check counted the outputs that are not equal to 2 × the eval ones).
ZERO_AND_NAN = {
    "CausalSelfAttention": '''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.query, self.key, self.value, self.output = (nn.Linear(hidden_size, hidden_size) for _ in range(4))

    def named_parameters(self, *args, **kwargs):
        for name, parameter in super().named_parameters(*args, **kwargs):
            yield name, torch.zeros_like(parameter, requires_grad=True)

    def forward(self, x):
        return torch.zeros_like(x)
''',
    "FeedForward": '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.up, self.down = nn.Linear(hidden_size, 4 * hidden_size), nn.Linear(4 * hidden_size, hidden_size)

    def forward(self, x):
        output = self.down(F.relu(self.up(x)))
        return output * float("nan") if self.training else output
''',
    "self_attention": attacks.LYING_TENSOR_ANSWER,
}

FLAWS = ["causal: no mask", "CausalSelfAttention: no mask", "Transformer: positions taken from the end",
         "FeedForward: no dropout"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    course = layout.copy_course(tmp_path_factory.mktemp("paired") / "course")
    grading.release(course, PW2)
    source = nbformat.read(course.source_notebook(PW2), as_version=4)
    release = nbformat.read(course.release_notebook(PW2), as_version=4)
    entries = {e.name: e for e in catalogue.load(PW2)}
    honest_answers = {**answers.solution_answers(source), **samples.mistakes(PW2)}
    flawed_answers = {**honest_answers, **{x: code for name in FLAWS for x, code in entries[name].cells.items()}}
    no_mask = entries["CausalSelfAttention: no mask"].cells["CausalSelfAttention"]
    flawed = answers.fill(release, flawed_answers)

    def answered(cells):
        return answers.fill(release, {**flawed_answers, **cells})

    notebooks = {
        "honest": answers.fill(release, honest_answers),
        "honest-flawed": flawed,
        "display-hook": handins.inserted_after(flawed, "grading_helpers", DISPLAY_HOOK),
        "send-probe-wrapper": handins.inserted_after(flawed, "grading_helpers", SEND_PROBE_WRAPPER),
        "graded-aware": answered(GRADED_AWARE),
        "cache": answered({**CACHE, "CausalSelfAttention": CACHE["CausalSelfAttention"].format(no_mask=no_mask)}),
        "zero-weights-nan-dropout-liar": answered(ZERO_AND_NAN),
    }
    for student, nb in notebooks.items():
        folder = layout.submission_dir(course.submitted, student, PW2)
        folder.mkdir(parents=True)
        (folder / PW2.notebook).write_text(nbformat.writes(nb), encoding="utf-8")
    results = {r.student: r for r in grading.grade(course, PW2, jobs=GRADING_JOBS)}
    return {"course": course, "results": results}


def _lines(graded, student, exercise) -> str:
    nb = nbformat.read(layout.submission_dir(graded["course"].autograded, student, PW2) / PW2.notebook, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == f"test_{exercise}")
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_the_honest_flawed_work_loses_points_in_each_of_its_four_extra_mistakes(graded):
    honest, flawed = graded["results"]["honest"], graded["results"]["honest-flawed"]
    assert honest.status == flawed.status == "graded"
    lower = {e for e, p in flawed.exercises.items() if p < honest.exercises[e]}
    assert lower == {"causal_multi_head_attention", "CausalSelfAttention", "Transformer", "FeedForward"}


ATTACKS = ["display-hook", "send-probe-wrapper", "graded-aware", "cache", "zero-weights-nan-dropout-liar"]


@pytest.mark.parametrize("student", ATTACKS)
def test_an_attack_never_earns_more_than_the_honest_flawed_work_in_any_exercise(graded, student):
    result, flawed = graded["results"][student], graded["results"]["honest-flawed"]
    assert result.status == "graded", result.note
    assert result.score <= flawed.score <= graded["results"]["honest"].score
    assert {e: p for e, p in result.exercises.items() if p > flawed.exercises[e]} == {}


@pytest.mark.parametrize("student", ["display-hook", "send-probe-wrapper", "cache"])
def test_outputs_made_to_agree_in_the_kernel_earn_no_causality_point(graded, student):
    """The causality checks of a function and a module without a mask: their outputs on the drawn inputs are not
    the grader's, whatever the kernel makes of the pairs."""
    for exercise in ("causal_multi_head_attention", "CausalSelfAttention"):
        printed = _lines(graded, student, exercise)
        assert "✗ a position never sees later positions" in printed, printed
    assert "✗ positions count from 0 whatever the length" in _lines(graded, student, "Transformer")


def test_answers_that_notice_they_are_graded_earn_nothing_where_they_cheat(graded):
    """Right on the notebook's own inputs, zeros (or the notebook's own numbers) on the drawn ones: no check of these
    exercises passes, though every verdict on the notebook's inputs does."""
    result = graded["results"]["graded-aware"]
    assert result.exercises["self_attention"] == result.exercises["lm_loss"] == 0
    printed = _lines(graded, "graded-aware", "self_attention")
    assert scoring.DRAWN_MISMATCH in printed


def test_a_module_that_reports_zero_weights_and_returns_zeros_earns_nothing(graded):
    result = graded["results"]["zero-weights-nan-dropout-liar"]
    assert result.exercises["CausalSelfAttention"] == 0
    assert "✗ values match causal multi-head attention" in _lines(graded, "zero-weights-nan-dropout-liar",
                                                                  "CausalSelfAttention")
    assert "✗ dropout on the output in training mode" in _lines(graded, "zero-weights-nan-dropout-liar", "FeedForward")


def test_weights_set_through_a_layout_the_checks_do_not_know_fail_with_a_clear_reason():
    """The checks set a module's weights by role, in the layouts they know; any other learned parameter stops the
    check with a reason that says so, rather than leaving the module's own random weights in place."""
    source = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    helpers = scoring.notebook_namespace(source, "helpers", grading=False)
    nn, torch = helpers["nn"], helpers["torch"]

    class Convolved(nn.Module):
        def __init__(self):
            super().__init__()
            self.query = nn.Linear(8, 8)
            self.mixer = nn.Conv1d(8, 8, 3)

    with pytest.raises(AssertionError, match="could not set the weights of your CausalSelfAttention for this check"):
        helpers["set_attention_weights"](Convolved(), helpers["symmetric_weights"](8, seed=0), num_heads=2)
    with pytest.raises(AssertionError, match="could not set the weights of your FeedForward"):
        helpers["set_feed_forward_weights"](nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8)), torch.zeros(32, 8))
