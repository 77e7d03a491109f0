"""The checks engine (coursekit/notebook_checks.py): the same check definition runs in the notebook for the student,
and split across the kernel boundary for grading; data crosses it as plain tensors and numbers only."""

import base64
import json

import nbformat
import pytest
import torch

from coursekit import answers, layout, notebook_checks, notebook_text, scoring
from coursekit.notebook_checks import Checks, ProbeDataError, pack, seeded_randn, unpack
from assignments import PW2


@pytest.fixture
def mode():
    """Sets Checks.mode for one test, and puts it back."""
    saved = Checks.mode, dict(Checks.registry), list(Checks.recorded)
    yield lambda m: setattr(Checks, "mode", m)
    Checks.mode, Checks.registry, Checks.recorded = saved[0], saved[1], saved[2]


def test_data_crosses_as_plain_tensors_numbers_strings_lists_and_dicts():
    data = {"output": torch.arange(6.0).view(2, 3), "mask": torch.ones(2, dtype=torch.bool), "loss": 1.5, "steps": 3,
            "ok": True, "name": "x", "nothing": None, "outputs": [torch.zeros(1), (torch.ones(2), 2)]}
    back = unpack(json.loads(json.dumps(pack(data))))
    assert back["output"].tolist() == [[0, 1, 2], [3, 4, 5]] and back["mask"].dtype == torch.bool
    assert (back["loss"], back["steps"], back["ok"], back["name"], back["nothing"]) == (1.5, 3, True, "x", None)
    assert back["outputs"][0].tolist() == [0.0] and back["outputs"][1][1] == 2


def test_a_lying_tensor_subclass_arrives_as_a_plain_tensor_with_its_real_values():
    class Liar(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.allclose, torch.equal, torch.Tensor.__eq__):
                return True
            return super().__torch_function__(func, types, args, kwargs)

    lie = torch.zeros(3).as_subclass(Liar)
    assert torch.allclose(lie, torch.full((3,), 99.0))  # in the kernel, it lies
    back = unpack(pack(lie))
    assert type(back) is torch.Tensor and not torch.allclose(back, torch.full((3,), 99.0))


def test_objects_with_behaviour_cross_as_their_type_name_only():
    class Sneaky:
        def __eq__(self, other):
            return True

        def __float__(self):
            return 100.0

    back = unpack(pack({"loss": Sneaky()}))["loss"]
    assert isinstance(back, notebook_checks.Other) and back.type_name.endswith("Sneaky") and back != 100.0


@pytest.mark.parametrize("message, why", [
    ("not a dict", "not probe data"),
    ({"tensors": "!!!", "data": {"v": 1}}, "unreadable tensors"),
    ({"tensors": base64.b64encode(b"\xff" * 8 + b"{}").decode(), "data": {"v": 1}}, "unreadable tensors"),
    ({"tensors": "", "data": {"t": "0"}}, "malformed"),
    ({"tensors": "", "data": {"v": [1, 2]}}, "malformed"),
    ({"tensors": "", "data": {"v": 1, "l": []}}, "malformed"),
    ({"tensors": "", "data": {"x": 1}}, "malformed"),
    ({"tensors": "A" * (notebook_checks.MAX_PROBE_BYTES * 2), "data": {"v": 1}}, "too large"),
])
def test_malformed_or_hostile_probe_data_is_refused_with_a_reason(message, why):
    with pytest.raises(ProbeDataError, match=why):
        unpack(message)


def test_a_safetensors_header_that_lies_about_its_size_is_refused():
    header = json.dumps({"0": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}}).encode()
    blob = len(header).to_bytes(8, "little") + header + b"\0" * 16
    with pytest.raises(ProbeDataError, match="unreadable tensors"):
        unpack({"tensors": base64.b64encode(blob).decode(), "data": {"t": "0"}})


def test_deeply_nested_data_is_cut_in_the_kernel_and_refused_by_the_grader():
    nested = []
    for _ in range(50):
        nested = [nested]
    assert "too deeply nested" in json.dumps(pack(nested))
    deep = {"v": 1}
    for _ in range(20):
        deep = {"l": [deep]}
    with pytest.raises(ProbeDataError):
        unpack({"tensors": "", "data": deep})


def test_in_the_notebook_a_check_runs_its_probe_then_its_verdict(mode, capsys):
    mode("local")
    checks = Checks("demo", points=3)
    checks.check("right", 2, lambda: torch.ones(2), lambda out: notebook_checks.expect_tensor(out, (2,)))
    checks.check("wrong", 1, lambda: torch.ones(3), lambda out: notebook_checks.expect_tensor(out, (2,)))
    assert checks.score() == 2
    printed = capsys.readouterr().out
    assert "  ✓ right [2/2]" in printed and "  ✗ wrong [0/1]: the output should have shape (2,), not (3,)" in printed


def test_while_graded_a_check_only_sends_its_probes_data_on_its_own_inputs_and_on_drawn_ones(mode, monkeypatch, capsys):
    sent = []
    monkeypatch.setattr(notebook_checks, "send_probe", lambda *args, drawn=False: sent.append((*args, drawn)))
    mode("probe")
    monkeypatch.setattr(Checks, "grading_salt", 12345)
    checks = Checks("demo", points=3)
    verdicts = []
    checks.check("one", 2, lambda: seeded_randn(2, seed=7), lambda out: verdicts.append(out))
    checks.check("two", 1, lambda: 1 / 0, lambda out: verdicts.append(out))
    assert checks.score() is None and verdicts == [] and capsys.readouterr().out == ""
    assert [(s[1], s[2], s[3], s[-1]) for s in sent] == [(0, "one", "ok", False), (0, "one", "ok", True),
                                                         (1, "two", "error", False), (1, "two", "error", True)]
    assert sent[2][4] == ("ZeroDivisionError", "division by zero")
    own, drawn = sent[0][4], sent[1][4]
    assert torch.equal(own, seeded_randn(2, seed=7)) and not torch.allclose(own, drawn)
    assert Checks.salt == 0  # the notebook's own inputs again after the probe


def test_a_check_vouched_for_by_another_sends_no_drawn_data(mode, monkeypatch):
    sent = []
    monkeypatch.setattr(notebook_checks, "send_probe", lambda *args, drawn=False: sent.append(drawn))
    mode("probe")
    Checks("demo", points=1).check("random", 1, lambda: torch.rand(2), lambda out: None, vouched_by="values")
    assert sent == [False]


def test_drawn_seeds_differ_from_the_notebooks_and_from_one_grading_to_the_next(monkeypatch):
    assert notebook_checks.drawn(5) == 5
    monkeypatch.setattr(Checks, "salt", 1)
    first = notebook_checks.drawn(5)
    monkeypatch.setattr(Checks, "salt", 2)
    assert len({5, first, notebook_checks.drawn(5)}) == 3


@pytest.mark.parametrize("data, reference, same", [
    (torch.ones(2, 3), torch.ones(2, 3) + 1e-6, True),
    (torch.ones(2, 3), torch.ones(3, 2), False),
    (torch.zeros(2, 3), torch.ones(2, 3), False),
    (torch.full((2,), float("nan")), torch.full((2,), float("nan")), False),  # NaN never matches, not even NaN
    ({"a": [torch.ones(1), 2]}, {"a": [torch.ones(1), 2]}, True),
    ({"a": [torch.ones(1), 2]}, {"a": [torch.ones(1), 3]}, False),
    ({"a": 1}, {"b": 1}, False),
    (1.0, 1.00001, True),
    (True, 1.0, False),
    ("x", "x", True),
])
def test_probe_data_matches_a_reference_only_with_the_same_structure_and_values(data, reference, same):
    if same:
        notebook_checks.same_data(data, reference)
    else:
        with pytest.raises(AssertionError):
            notebook_checks.same_data(data, reference)


def test_a_probe_that_runs_too_long_is_stopped_and_the_exercises_other_checks_skipped(mode, capsys):
    mode("local")
    monkeypatch_seconds = Checks.seconds
    Checks.seconds = 1
    try:
        checks = Checks("demo", points=2)
        checks.check("loops", 1, lambda: [None for _ in iter(int, 1)], lambda out: None)
        checks.check("after", 1, lambda: 1, lambda out: None)
    finally:
        Checks.seconds = monkeypatch_seconds
    printed = capsys.readouterr().out
    assert "ran for more than 1 seconds" in printed and notebook_checks.NOT_RUN_AFTER_TIMEOUT in printed


@pytest.mark.parametrize("assignment", layout.assignments(), ids=str)
def test_the_helpers_cell_holds_the_current_checks_engine(assignment):
    nb = nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)
    helpers = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "grading_helpers")
    assert notebook_text.embedded_engine(helpers.source) == notebook_text.engine_text(), \
        "the helpers cell's copy of coursekit/notebook_checks.py is stale: run `make notebook release`"
    release = nbformat.read(layout.COURSE.release_notebook(assignment), as_version=4)
    assert helpers.source in {c.source for c in release.cells}


def test_every_check_of_a_check_cell_has_a_description_of_its_own(grader_copy):
    """The grader, the feedback and the class report tell checks apart by their description."""
    for grade_id in grader_copy.test_cells:
        descriptions = [entry[0] for entry in grader_copy.checks_of(grade_id).entries]
        assert len(descriptions) == len(set(descriptions)), grade_id


# ------------------------------------------------------------------------------------ the grader's side

def _message(index, description, value, status="ok", drawn=False):
    return {"index": index, "description": description, "status": status, "drawn": drawn, **pack(value)}


def _both(index, description, value):
    """The same data sent for the notebook's own inputs and for the drawn ones (a kernel that ignores the salt)."""
    return [_message(index, description, value), _message(index, description, value, drawn=True)]


@pytest.fixture
def grader_copy():
    return scoring.Grader(nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4))


@pytest.fixture(scope="module")
def grader():
    return scoring.Grader(nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4))


SALT = 987654321


def _solution_outputs(grader, salt):
    """What the instructor's self_attention gives for each probe of its check cell, on the inputs drawn with `salt`,
    computed here, apart from the grader's reference: the test cell's own input functions, the solution's function."""
    source = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    solution = {}
    exec("import math, torch\n" + answers.solution_answers(source)["self_attention"], solution)
    namespace, checks = grader.namespace, grader.namespace["Checks"]
    namespace["self_attention"] = solution["self_attention"]
    checks.salt = salt
    try:
        S, W_Q, W_K, W_V = namespace["_self_attention_inputs"](1)
        randn = namespace["seeded_randn"]  # the grader's copy of the engine, which the salt is set in
        batch = randn(3, 5, 8, seed=5), randn(8, 4, seed=6), randn(8, 4, seed=7), randn(8, 4, seed=8)
        asked = namespace["attention_weights_asked"](solution["self_attention"])  # what a value check also asks
        outputs = [namespace["_public_self_attention_output"](),
                   {"output": solution["self_attention"](*namespace["_public_self_attention_inputs"]()), "asked": asked},
                   solution["self_attention"](*namespace["_public_large_score_inputs"]()),
                   {"output": solution["self_attention"](S, W_Q, W_K, W_V), "asked": asked},
                   {"batch": solution["self_attention"](*batch)} if salt else  # drawn: the batch only (drawn_run)
                   {"batch": solution["self_attention"](*batch),
                    "alone": [solution["self_attention"](batch[0][b:b + 1], *batch[1:]) for b in range(3)]}]
    finally:
        checks.salt = 0
        del namespace["self_attention"]
    return outputs


def test_the_grader_judges_probe_data_with_its_own_verdicts_and_references(grader_copy):
    """The solution's data on the notebook's inputs and on the drawn ones: full marks. The same data for the notebook's
    inputs replayed as the drawn answer (a kernel that knows the notebook's example): no point at all."""
    descriptions = [entry[0] for entry in grader_copy.checks_of("test_self_attention").entries]
    own, drawn = _solution_outputs(grader_copy, 0), _solution_outputs(grader_copy, SALT)
    honest = [m for i, d in enumerate(descriptions) for m in (_message(i, d, own[i]), _message(i, d, drawn[i], drawn=True))]
    lines, points = grader_copy.judge("test_self_attention", honest, timed_out=False, salt=SALT)
    assert points == 10 and lines[-1] == "self_attention: 10/10 points.", lines
    replayed = [m for i, d in enumerate(descriptions) for m in _both(i, d, own[i])]
    lines, points = scoring.Grader(grader_copy.source).judge("test_self_attention", replayed, timed_out=False, salt=SALT)
    assert points == 0, lines
    assert all("not on other inputs of the same sizes drawn while grading" in line for line in lines[1:-1]), lines


def test_right_shapes_and_consistent_pairs_of_zeros_earn_nothing(grader):
    """Zeros of the right shapes, and a batch of zeros consistent with the zeros of each sequence alone: a property
    of two outputs of the kernel's, and shapes, earn nothing without values the grader can vouch for."""
    lines, points = grader.judge("test_self_attention", [
        *_both(0, "output shape (B, T, d_v)", torch.zeros(2, 5, 3)),
        *_both(1, "values on a small example (d_k = 2, d_v = 3)", torch.zeros(1, 3, 3)),
        *_both(2, "no inf or NaN for large scores", torch.zeros(1, 3, 3)),
        *_both(3, "values match softmax(Q Kᵀ / √d_k) V", torch.zeros(2, 6, 3)),
        *_both(4, "sequences in a batch don't mix", {"batch": torch.zeros(3, 5, 4), "alone": [torch.zeros(1, 5, 4)] * 3}),
    ], timed_out=False, salt=SALT)
    assert points == 0
    assert lines[0] == "Checking self_attention:" and lines[-1] == "self_attention: 0/10 points."
    assert lines[1].startswith("  ✗ output shape (B, T, d_v) [0/1]: " + scoring.DRAWN_MISMATCH)
    assert lines[2].startswith("  ✗ values on a small example (d_k = 2, d_v = 3) [0/3]: wrong values")
    assert lines[4].startswith("  ✗ values match softmax(Q Kᵀ / √d_k) V [0/3]: wrong output")


def test_the_grader_ignores_data_for_other_checks_repeats_and_strangers(grader):
    lines, points = grader.judge("test_multi_head_attention", [
        _message(0, "a check that does not exist", torch.zeros(2, 6, 8)),
        _message(0, "output shape (B, T, hidden)", torch.zeros(2, 6, 8)),  # a second message for index 0: ignored
        {"index": "1", "status": "ok"}, {"index": 2, "description": "values with num_heads=2", "status": "ok",
                                          "drawn": False, "tensors": "", "data": {"o": "evil"}},
        {"index": 2, "description": "values with num_heads=2", "status": "ok", "drawn": "yes", "tensors": "", "data": {}},
    ], timed_out=False, salt=SALT)
    assert points == 0
    assert notebook_checks.NO_ANSWER in lines[1] and notebook_checks.NO_ANSWER in lines[2]
    assert "should be a torch.Tensor, not Other" in lines[3]


def test_kernel_text_in_a_reason_is_one_bounded_line(grader):
    flood = "line one\nline two\r\x1b[31m" + "x" * 5000
    description = grader.checks_of("test_causal_multi_head_attention").entries[0][0]
    lines, points = grader.judge("test_causal_multi_head_attention", [
        {"index": 0, "description": description, "status": "error", "drawn": False, "error": ["RuntimeError", flood]},
    ], timed_out=False, salt=SALT)
    line = lines[1]
    assert points == 0 and "\n" not in line and "\x1b" not in line and len(line) < scoring.MAX_KERNEL_TEXT + 300
    assert "line one line two" in line


def test_a_check_cell_that_ran_out_of_time_says_so_for_the_checks_without_data(grader):
    lines, points = grader.judge("test_FeedForward", [_message(0, "output shape", {"outputs": {"x": torch.zeros(2, 3, 8)}})],
                                 timed_out=True, salt=SALT)
    assert points == 0 and all(notebook_checks.CELL_TIMED_OUT in line for line in lines[1:-1])


@pytest.mark.parametrize("assignment", layout.assignments(), ids=str)
def test_every_check_cells_honest_probe_data_fits_well_within_its_budget(assignment):
    """The solution's data for a check cell, on its own and on drawn inputs (twice the drawn run's), as packed to
    cross: beyond the cell's probe budget, the grader drops it and the checks get no answer."""
    import json

    grader = scoring.Grader(nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4))
    budget = scoring.GradedExecute.probe_budget.default_value
    for grade_id in grader.test_cells:
        sent = sum(len(json.dumps(pack(data))) for status, data in grader.references_of(grade_id, SALT) if status == "ok")
        assert 2 * sent < 0.8 * budget, (grade_id, sent)


def test_the_line_after_the_public_checks_counts_hidden_points_in_words():
    line = notebook_checks.summary_line("decode", 2, 4, 5)
    assert line.endswith("Hidden checks worth 1 more point run when your work is graded.")
    assert "worth 6 more points run" in notebook_checks.summary_line("decode", 2, 4, 10)
    assert notebook_checks.summary_line("decode", 10, 10, 10) == "decode: 10/10 points."


@pytest.mark.parametrize("eos_id", [50256, 0], ids=["GPT-2's tokenizer (Colab)", "the offline BPE tokenizer"])
def test_a_loss_that_ignores_the_eos_id_gets_the_same_diagnosis_whatever_the_tokenizer(eos_id):
    """lm_loss's checks show the student's code a tokenizer whose EOS id is the checks' padding id: the same mistake is
    named the same way in Colab (GPT-2's EOS is 50256) and offline."""
    from coursekit import catalogue
    source = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    release = nbformat.read(layout.COURSE.release_notebook(PW2), as_version=4)
    answer = (f"import types\ntokenizer = types.SimpleNamespace(eos_token_id={eos_id}, pad_token_id={eos_id})\n\n"
              "def lm_loss(logits, input_ids, attention_mask):\n"
              "    V = logits.shape[-1]\n"
              "    return F.cross_entropy(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1),\n"
              "                           ignore_index=tokenizer.eos_token_id)\n")
    failed = catalogue.public_failures({"lm_loss": answer}, release, answers.solution_answers(source))["lm_loss"]
    assert [c.description for c in failed] == ["a padded batch: the mean over the real target tokens only"]
    assert "every EOS token is ignored" in failed[0].reason


def test_a_right_answer_with_a_malformed_further_answer_keeps_its_points(grader_copy):
    """What a value check also asks (the diagnosis by behaviour) is read only once the values are wrong: a kernel that
    sends the right output with a further answer the grader can't read loses nothing (it lost 3 points when the verdict
    read it first), and a wrong output is still told its plain difference."""
    descriptions = [entry[0] for entry in grader_copy.checks_of("test_self_attention").entries]
    own, drawn = _solution_outputs(grader_copy, 0), _solution_outputs(grader_copy, SALT)
    for index in (1, 3):  # the two value checks that ask; on the notebook's inputs (the drawn data must be the grader's)
        own[index] = {"output": own[index]["output"], "asked": {"weights": torch.zeros(1, 4, 4), "scores": "?"}}
    honest = [m for i, d in enumerate(descriptions) for m in (_message(i, d, own[i]), _message(i, d, drawn[i], drawn=True))]
    lines, points = grader_copy.judge("test_self_attention", honest, timed_out=False, salt=SALT)
    assert points == 10, lines
    own[1] = {"output": own[1]["output"] + 1, "asked": own[1]["asked"]}
    lines = scoring.Grader(grader_copy.source).judge("test_self_attention", [_message(1, descriptions[1], own[1])],
                                                     timed_out=False, salt=SALT)[0]
    assert lines[2].startswith("  ✗ values on a small example (d_k = 2, d_v = 3) [0/3]: wrong values in the output "
                               "(largest difference from the expected values: 1"), lines
