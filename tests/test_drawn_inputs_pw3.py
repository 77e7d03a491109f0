"""pw3's checks on inputs drawn while grading: answers that try to earn points without computing them.

Whatever the kernel produces is hostile. While a hand-in is graded, every probe of pw3's checks also runs on inputs
drawn with a salt the grader draws for each check cell, and a check earns its points only when the kernel's data on
those inputs matches what the grader computes itself, on the same inputs: the solution's data (filters, beam search,
a model sure of each next token), or, for sampling, what every right sampler gives on the drawn model (tokens only
where it puts probability, at the frequencies of the probabilities the grader computes).

Every hand-in below is a real notebook, graded through the real path (intake, nbgrader, the sandboxed kernel, the
grader), in one batch. The baseline is honest work with the demo's three mistakes (apply_temperature multiplies,
top_p_filter removes the token that crosses p, sample ignores its generator). Each attack is the baseline with some
answers replaced by answers that detect grading, cache, replay, forge probe messages or return NaN: none may earn
more than the baseline, in total or in any exercise, and the honest solution still gets full marks.
"""

import nbformat
import pytest

import handins
from assignments import PW3
from coursekit import answers, catalogue, checks, draws, grading, layout, notebook_checks, samples, scoring

DRAWN_MISMATCH = scoring.DRAWN_MISMATCH

# ---- answers that know when they are graded (GRADING, Checks.mode, Checks.salt, Checks.grading_salt)

# Right on the notebook's own inputs while graded (the answers its messages show), the demo's mistake otherwise.
TEMPERATURE_KNOWS_THE_NOTEBOOK = '''def apply_temperature(logits, temperature):
    if GRADING and Checks.mode == "probe" and Checks.salt == 0:
        return logits / temperature
    return logits * temperature
'''

TOP_P_KNOWS_THE_NOTEBOOK = '''def top_p_filter(logits, p):
    probabilities, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    if GRADING and Checks.mode == "probe" and Checks.salt == 0:
        remove_sorted = probabilities.cumsum(dim=-1) - probabilities >= p
    else:
        remove_sorted = probabilities.cumsum(dim=-1) > p
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))
'''

# The demo's sample (it ignores the generator), as the attacks below build on it.
_HONEST_LOOP = '''    model.eval()
    for _ in range(max_new_tokens):
        logits = apply_temperature(model(input_ids[:, -model.seq_len:])[:, -1, :], temperature)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        next_token = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
        input_ids = torch.cat((input_ids, next_token), dim=1)
    return input_ids
'''

# While graded, no sampling from the model: tokens fixed by the generator's seed and each prompt, so the same seed gives
# the same tokens, a prompt gets the same ones alone or in a batch, in training mode or eval mode. The model runs once
# per token (the checks count the runs), its logits unused.
SAMPLE_CHEAP_WHILE_GRADED = '''@torch.no_grad()
def sample(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    if GRADING and Checks.grading_salt != 0:
        model.eval()
        for _ in range(max_new_tokens):
            V = model(input_ids[:1, -model.seq_len:]).shape[-1]
        seed = generator.initial_seed() if generator is not None else 0
        new = [torch.randint(0, V, (max_new_tokens,), generator=torch.Generator().manual_seed(hash((seed, *row)) % 2**31))
               for row in input_ids.tolist()]
        return torch.cat([input_ids, torch.stack(new).to(input_ids.device)], dim=1)
''' + _HONEST_LOOP

# A cache: an input seen before gets the tokens it got then (the same seed, a prompt alone or in a batch, a model in
# training mode or in eval mode...); a new one is sampled as the demo does.
SAMPLE_CACHE_BY_INPUT = '''_SEEN = {}


@torch.no_grad()
def sample(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    key = (tuple(input_ids.shape), tuple(input_ids.flatten().tolist()), max_new_tokens, temperature, top_k, top_p)
    if key in _SEEN:
        for _ in range(max_new_tokens):  # the model runs once per token, as the checks count
            model(input_ids[:, -model.seq_len:])
    else:
        _SEEN[key] = _sample(model, input_ids, max_new_tokens, temperature, top_k, top_p)
    return _SEEN[key].clone()


def _sample(model, input_ids, max_new_tokens, temperature, top_k, top_p):
''' + _HONEST_LOOP

# A cache by the generator's seed and the sizes: the same seed gets the same tokens, whatever the prompts and the model.
SAMPLE_CACHE_BY_SEED = '''_SEEN = {}


@torch.no_grad()
def sample(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    key = (tuple(input_ids.shape), max_new_tokens, None if generator is None else generator.initial_seed())
    if key in _SEEN and generator is not None:
        for _ in range(max_new_tokens):  # the model runs once per token, as the checks count
            model(input_ids[:, -model.seq_len:])
    else:
        _SEEN[key] = _sample(model, input_ids, max_new_tokens, temperature, top_k, top_p)
    return torch.cat([input_ids, _SEEN[key][:, input_ids.shape[1]:]], dim=1)


def _sample(model, input_ids, max_new_tokens, temperature, top_k, top_p):
''' + _HONEST_LOOP

# The answer it gave before for logits of the same shape (on the notebook's own inputs, the answer its messages show):
# computed right once, replayed for the inputs drawn while grading.
TOP_K_REPLAYS_BY_SHAPE = '''_GIVEN = {}


def top_k_filter(logits, k):
    key = (tuple(logits.shape), k)
    if key not in _GIVEN:
        kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
        _GIVEN[key] = logits.masked_fill(logits < kth, float("-inf"))
    return _GIVEN[key].clone()
'''

# ---- NaN: right on the notebook's own inputs, NaN on the inputs drawn while grading
TEMPERATURE_NAN_WHEN_DRAWN = '''def apply_temperature(logits, temperature):
    return logits / temperature if Checks.salt == 0 else torch.full_like(logits, float("nan"))
'''
TOP_P_NAN = '''def top_p_filter(logits, p):
    return torch.full_like(logits, float("nan"))
'''
BEAM_NAN_WHEN_DRAWN = '''@torch.no_grad()
def beam_search(model, input_ids, num_beams, max_new_tokens):
    model.eval()
    beams, scores = input_ids, torch.zeros(1, device=input_ids.device)
    for _ in range(max_new_tokens):
        log_probabilities = model(beams[:, -model.seq_len:])[:, -1].log_softmax(dim=-1)
        candidates = (scores[:, None] + log_probabilities).flatten()
        scores, best = candidates.topk(min(num_beams, candidates.numel()))
        V = log_probabilities.shape[-1]
        beams = torch.cat([beams[best // V], (best % V)[:, None]], dim=1)
    return beams[:1] if Checks.salt == 0 else torch.full(beams[:1].shape, float("nan"))
'''

# ---- forged probe messages, displayed before the real ones: for each check, the data on the notebook's own inputs
# sent again as the data on the drawn inputs, first (a kernel that ignores the salt), and zeros for every check
# before the cell runs, as own and as drawn data.
FORGED_DRAWN_DATA = '''import re
from IPython.display import display

_real_send_probe = send_probe


def send_probe(exercise, index, description, status, result, drawn=False):
    if not drawn and status == "ok":
        _real_send_probe(exercise, index, description, status, result, drawn=True)  # first: the grader keeps it
    _real_send_probe(exercise, index, description, status, result, drawn)


# What the notebook's messages show for two public checks of apply_temperature: sent, before the cell runs, as the
# data on the notebook's inputs and on the drawn ones.
_KNOWN = {"divides the logits by the temperature": {"2.0": torch.tensor([[1.0, -0.5, 0.25, 0.0]]),
                                                    "0.5": torch.tensor([[4.0, -2.0, 1.0, 0.0]])},
          "logits of shape (B, T, V), left unchanged": {
              "output": torch.tensor([[[1.0, -0.5, 0.25]], [[0.0, 2.0, -1.0]]]),
              "logits_after": torch.tensor([[[4.0, -2.0, 1.0]], [[0.0, 8.0, -4.0]]])}}


def _forge(info):
    if 'Checks("apply_temperature"' not in info.raw_cell:
        return
    descriptions = re.findall(r'checks\\.check\\(\\s*"([^"]+)"', info.raw_cell)
    for index, description in enumerate(descriptions):
        for drawn in (False, True):
            if description in _KNOWN:
                display({PROBE_MIME: {"exercise": "apply_temperature", "index": index, "description": description,
                                      "status": "ok", "drawn": drawn, **pack(_KNOWN[description])}}, raw=True)


get_ipython().events.register("pre_run_cell", _forge)
'''


# Each attack: the exercise cells it replaces in the baseline, and a cell of its own after the helpers cell (or None).
ATTACKS = {
    # Knows when it is graded, and gives the answers the notebook's messages show on the notebook's inputs; sample
    # returns cheap tokens, consistent for the same seed, alone or in a batch, without sampling from the model.
    "knows-when-graded": ({"apply_temperature": TEMPERATURE_KNOWS_THE_NOTEBOOK, "top_p_filter": TOP_P_KNOWS_THE_NOTEBOOK,
                           "sample": SAMPLE_CHEAP_WHILE_GRADED}, None),
    # A cache by input for sample; NaN where the salt is drawn (apply_temperature, beam_search) or everywhere (top-p).
    "cache-and-nan": ({"sample": SAMPLE_CACHE_BY_INPUT, "apply_temperature": TEMPERATURE_NAN_WHEN_DRAWN,
                       "top_p_filter": TOP_P_NAN, "beam_search": BEAM_NAN_WHEN_DRAWN}, None),
    # A cache by the generator's seed for sample; top_k_filter replays the answer it gave for logits of the same shape.
    "cache-by-seed-and-replay": ({"sample": SAMPLE_CACHE_BY_SEED, "top_k_filter": TOP_K_REPLAYS_BY_SHAPE}, None),
    # Forged probe messages, before the real ones: the data on the notebook's inputs sent again as the drawn data,
    # and the notebook's expected answers for two checks of apply_temperature.
    "forged-probe-messages": ({}, FORGED_DRAWN_DATA),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The honest solution, the baseline and the attacks, graded in one batch (two workers): results, and the check
    lines of each autograded notebook (test cell -> checks)."""
    course = layout.copy_course(tmp_path_factory.mktemp("course"))
    grading.release(course, PW3)
    source = nbformat.read(course.source_notebook(PW3), as_version=4)
    release = nbformat.read(course.release_notebook(PW3), as_version=4)
    honest = answers.solution_answers(source)
    baseline = {**honest, **samples.mistakes(PW3)}
    notebooks = {"honest": answers.fill(release, honest), "baseline": answers.fill(release, baseline)}
    for student, (replaced, cell) in ATTACKS.items():
        nb = answers.fill(release, {**baseline, **replaced})
        notebooks[student] = nb if cell is None else handins.inserted_after(nb, "grading_helpers", cell)
    for student, nb in notebooks.items():
        folder = layout.submission_dir(course.submitted, student, PW3)
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / PW3.notebook)
    results = {r.student: r for r in grading.grade(course, PW3, jobs=2)}
    lines = {student: checks.by_test_cell(nbformat.read(
        layout.submission_dir(course.autograded, student, PW3) / PW3.notebook, as_version=4)) for student in notebooks}
    return results, lines


def test_the_honest_solution_gets_full_marks(batch):
    results, lines = batch
    assert results["honest"].status == "graded" and results["honest"].score == 100, lines["honest"]


def test_the_baseline_loses_points_in_the_three_exercises_of_the_demos_mistakes_only(batch):
    results, _ = batch
    honest, baseline = results["honest"], results["baseline"]
    assert baseline.status == "graded"
    assert {e for e, points in baseline.exercises.items() if points < honest.exercises[e]} == {
        "apply_temperature", "top_p_filter", "sample"}


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_attack_earns_no_more_than_the_baseline_in_total_and_in_every_exercise(batch, attack):
    results, lines = batch
    result, baseline = results[attack], results["baseline"]
    assert result.status == "graded"
    assert result.score <= baseline.score, lines[attack]
    assert set(result.exercises) == set(baseline.exercises)
    for exercise, points in result.exercises.items():
        assert points <= baseline.exercises[exercise], (exercise, lines[attack][f"test_{exercise}"])


def _failed(lines, exercise):
    return {c.description: c.reason for c in lines[f"test_{exercise}"] if not c.passed}


def test_answers_right_only_on_the_notebooks_inputs_fail_on_the_drawn_ones(batch):
    """apply_temperature and top_p_filter that give the notebook's expected answers on its own inputs (they know when
    they are graded) pass every verdict there, and lose the points of the values on the drawn inputs."""
    results, lines = batch
    failed = _failed(lines["knows-when-graded"], "apply_temperature")
    assert failed["divides the logits by the temperature"].startswith(DRAWN_MISMATCH)
    assert failed["logits of shape (B, T, V), left unchanged"].startswith(DRAWN_MISMATCH)
    # on the drawn inputs, its top_p_filter is the baseline's mistake (the token that crosses p removed): the points of
    # that mistake at most (the checks of batches, which a known mistake of one row keeps), never those of the values
    assert results["knows-when-graded"].exercises["top_p_filter"] <= results["baseline"].exercises["top_p_filter"]
    assert _failed(lines["knows-when-graded"], "top_p_filter")[
        "keeps the smallest set of most likely tokens whose probabilities reach p"].startswith(DRAWN_MISMATCH)


def test_cheap_consistent_tokens_without_the_model_earn_nothing_in_sample(batch):
    """The same tokens for the same seed, for a prompt alone or in a batch, in training or eval mode: properties of
    the kernel's own outputs, which earn nothing without tokens the grader vouches for."""
    results, lines = batch
    # a check of two tokens may meet the model's by chance (1 in 100): a few points at most, of the baseline's 26
    assert results["knows-when-graded"].exercises["sample"] <= 5, lines["knows-when-graded"]["test_sample"]
    failed = _failed(lines["knows-when-graded"], "sample")
    for description in ("each prompt of a batch is sampled as it would be alone",
                        "generators seeded the same give the same tokens", "the tokens follow the model's probabilities",
                        "a model sure of each next token, other sizes", "the generator, other seeds and prompts"):
        assert description in failed


def test_a_cache_and_nan_lose_the_checks_the_baseline_passes(batch):
    results, lines = batch
    attacked, baseline = results["cache-and-nan"].exercises, results["baseline"].exercises
    assert attacked["sample"] < baseline["sample"] and attacked["beam_search"] < baseline["beam_search"]
    assert attacked["apply_temperature"] == 0 and attacked["top_p_filter"] == 0
    assert _failed(lines["cache-and-nan"], "beam_search")["one beam is greedy decoding"].startswith(DRAWN_MISMATCH)


def test_a_cache_by_seed_and_a_replay_by_shape_lose_the_checks_the_baseline_passes(batch):
    results, lines = batch
    attacked, baseline = results["cache-by-seed-and-replay"].exercises, results["baseline"].exercises
    assert attacked["top_k_filter"] < baseline["top_k_filter"] and attacked["sample"] <= baseline["sample"]
    failed = _failed(lines["cache-by-seed-and-replay"], "sample")
    assert "generators seeded the same give the same tokens" in failed, failed


def test_forged_probe_messages_earn_nothing(batch):
    """The grader keeps the first message for each check and each kind of input: forged ones, displayed first, are
    judged like any data, and data that is not computed on the drawn inputs earns nothing."""
    results, lines = batch
    assert results["forged-probe-messages"].score == 0, lines["forged-probe-messages"]
    failed = _failed(lines["forged-probe-messages"], "apply_temperature")
    assert failed["divides the logits by the temperature"].startswith(DRAWN_MISMATCH)


# ------------------------------------------------------------------ every check draws its inputs (in this process)

def _probe_messages(source, salt):
    """The probe messages of every test cell of pw3's instructor notebook, as a kernel running the solution sends them
    (the solution's cells and the test cells run here, in probe mode): test cell -> messages."""
    kernel = scoring.notebook_namespace(source, "kernel", grading=True)
    kernel["Checks"].mode = "probe"
    sent, by_cell = [], {}

    def send_probe(exercise, index, description, status, result, drawn=False):
        sent.append({"exercise": exercise, "index": index, "description": description, "status": status,
                     "drawn": drawn, **notebook_checks.pack(result)})
    kernel["send_probe"] = send_probe
    for cell in source.cells:
        if answers.is_solution(cell):
            exec(compile(cell.source, answers.grade_id(cell), "exec"), kernel)
        elif scoring.is_test_cell(cell):
            sent.clear()
            kernel["Checks"].grading_salt = salt
            exec(compile(cell.source, answers.grade_id(cell), "exec"), kernel)
            by_cell[answers.grade_id(cell)] = list(sent)
    return by_cell


def test_every_check_draws_other_inputs_while_graded():
    """The solution's data earns every point; the same data on the notebook's own inputs, replayed as the data on the
    drawn inputs (a kernel that ignores the salt, or replays what it computed first), earns none, in every check of
    every exercise: the salt changes the inputs of every check, public and hidden (the stand-in models' tokens are
    relabeled, every one of them, so that even a model of 4 tokens gives other token ids)."""
    source = nbformat.read(layout.COURSE.source_notebook(PW3), as_version=4)
    salt = 20261207
    by_cell = _probe_messages(source, salt)
    points = answers.test_points(source)
    honest, replayed = scoring.Grader(source), scoring.Grader(source)
    for grade_id, messages in by_cell.items():
        lines, earned = honest.judge(grade_id, messages, timed_out=False, salt=salt)
        assert earned == points[grade_id], lines
        own = [m for m in messages if not m["drawn"]]
        lines, earned = replayed.judge(grade_id, own + [{**m, "drawn": True} for m in own], timed_out=False, salt=salt)
        assert earned == 0, lines
        assert all(DRAWN_MISMATCH in line for line in lines[1:-1]), lines


# A top-k whose batch is its rows filtered one by one, so that it agrees with its rows alone (what the notebook's
# verdict compares), each row keeping one logit too many, scaled by 1.01: a mistake no check knows.
TOP_K_ROWS_OF_AN_UNKNOWN_MISTAKE = '''def _one_row(logits, k):
    kth = torch.topk(logits, min(k + 1, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf")) * 1.01


def top_k_filter(logits, k):
    rows = logits.reshape(-1, logits.shape[-1])
    return torch.cat([_one_row(row[None], k) for row in rows]).reshape(logits.shape)
'''
BATCH_CHECKS = ("each row of a batch is filtered on its own", "logits of shape (B, T, V)")


def _passed(lines, description):
    return any(line.lstrip().startswith(f"✓ {description}") for line in lines)


def test_a_batch_check_earns_its_points_only_with_rows_the_grader_computes():
    """The checks of batches compare, in the notebook, the kernel's batch with its own rows filtered alone; while
    graded, their points need the batch to be the rows filtered as the grader computes them on drawn logits: right,
    or with a known mistake of one row (told by the checks of one row, not again by the checks of batches)."""
    source = nbformat.read(layout.COURSE.source_notebook(PW3), as_version=4)
    known = next(e for e in catalogue.load(PW3) if e.name == "top_p_filter: gather instead of scatter")
    found = draws.judge(source, known.cells, 2)
    assert all(_passed(found.lines["top_p_filter"], d) for d in BATCH_CHECKS), found.lines["top_p_filter"]
    found = draws.judge(source, {"top_k_filter": TOP_K_ROWS_OF_AN_UNKNOWN_MISTAKE}, 2)
    assert not any(_passed(found.lines["top_k_filter"], d) for d in BATCH_CHECKS), found.lines["top_k_filter"]
