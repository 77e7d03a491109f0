# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Practical work 3: Decoding strategies
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/YOUR-GITHUB-ORG/transformers-course/blob/main/release/pw3_decoding/pw3_decoding.ipynb)
#
# A language model gives, at each step, a probability for every possible next token. *Decoding* is how we turn those
# probabilities into text. In practical work 2 you decoded greedily: always the most likely token. Here you implement,
# in PyTorch, the other strategies that text generation uses every day: temperature, top-k and top-p (nucleus)
# sampling, a sampling loop, and beam search. You try them on a small character-level language model that the
# notebook trains in a few seconds, on the CPU.
#
# **Grading.** The notebook is graded automatically, out of **100 points**:
#
# | exercise | points |
# |---|---|
# | `apply_temperature` | 10 |
# | `top_k_filter` | 20 |
# | `top_p_filter` | 25 |
# | `sample` | 30 |
# | `beam_search` | 15 |
#
# Below each exercise, a locked cell checks your work. It prints one line per check (✓ or ✗ with
# the reason) and ends with the points earned. Those are the **public checks**: more checks of the
# same exercise run when your work is graded, so passing them all is a good sign, not a guarantee.
#
# Please keep the names and signatures of the functions you are asked to write, don't delete or copy
# the locked cells, and hand in the notebook under its original name (`pw3_decoding.ipynb`). The
# **Check my work** cell at the end of the notebook runs the public checks of every exercise again,
# sums them up, and explains how to hand in.

# %% [markdown]
# # Installation and imports
#
# In Colab, save a copy of the notebook to your Drive first (File > Save a copy in Drive), so that your work is kept.
#
# This practical work needs no GPU and nothing to install: PyTorch is enough, and Colab already has it. The default
# runtime (CPU) is fine.

# %% nbgrader={"grade": false, "grade_id": "install", "locked": true, "schema_version": 3, "solution": false, "task": false}
import os
import sys

# nbgrader sets NBGRADER_EXECUTION while it grades: the notebook then runs offline and trains its model for fewer steps.
GRADING = "NBGRADER_EXECUTION" in os.environ
if GRADING:
    os.environ["HF_HUB_OFFLINE"] = "1"
OFFLINE = os.environ.get("HF_HUB_OFFLINE") == "1"
IN_COLAB = "google.colab" in sys.modules
# Nothing to install: this practical work only uses PyTorch, which Colab already has (never reinstall it).

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch
import torch.nn as nn
from torch.nn import functional as F

# %% nbgrader={"grade": false, "grade_id": "device", "locked": true, "schema_version": 3, "solution": false, "task": false}
# The model of this practical work is tiny: the CPU runs it fast enough, and on the CPU a seeded torch.Generator
# draws the same random numbers on every machine, so that everyone can reproduce the same samples.
device = "cpu"
# One thread is the fastest for tensors this small: several threads would spend more time coordinating than computing.
torch.set_num_threads(1)
if not GRADING:
    print("Running on the CPU: this practical work needs no GPU.")

# %% nbgrader={"grade": true, "grade_id": "grading_helpers", "locked": true, "points": 0, "schema_version": 3, "solution": false, "task": false}
# @title Helpers for the checks below each exercise: please run this cell, and don't edit it
# --- begin coursekit/notebook_checks.py (written here by `make notebook`) ---
"""The checks engine: written into every notebook's helpers cell by `make notebook`, and used by the grader.

Each check is one definition, `checks.check(description, points, probe, verdict)`:
- `probe()` calls the student's code on given inputs and returns plain data (tensors, numbers, strings, and
  lists or dicts of them);
- `verdict(data)` judges that data: it raises AssertionError with a reason the student understands, or returns.
  A hidden check names its verdict instead (a string): the verdict lives in a grader-only cell.

The same definition runs in three modes (`Checks.mode`):
- "local" (Colab, Jupyter): probe and verdict both run in the notebook, and one line per check is printed;
- "probe" (the notebook while it is graded): only the probe runs in the student's kernel; its data is sent out,
  as a display message of type PROBE_MIME, and the kernel prints nothing that counts;
- "record" (the grader, outside the kernel): nothing runs; the check is recorded, so that the grader can judge
  the data the kernel sent with the verdict of its own, trusted copy of the check.
Points are only ever computed from the probe's data by the grader's verdicts: nothing the kernel prints or
returns as a score counts. `pack` and `unpack` carry the data across as JSON plus safetensors: plain tensors
and numbers, never objects with behaviour.

While graded, every probe runs twice in the kernel: once on the notebook's own inputs (salt 0: the data its
verdict judges, as in Colab, so that the message is the one the student saw), and once on inputs drawn while
grading (`Checks.salt`, a number the grader draws for each check cell and tells the kernel only when the cell
runs: every seed of the checks goes through `drawn`). A fourth mode, "reference", runs in the grader: the same
probe, on the same drawn inputs, calls the instructor's solution, and a check earns its points only when the
kernel's answer on the drawn inputs matches that reference (`same_data`, or a `compare` function named by the
check: `same_shape` for a check of shapes, or one of the grader's own). A check whose answer no reference can
fix (random, or laid out as the student chose) names the check that vouches for it (`vouched_by`): it earns its
points only when that one does.
"""

import base64
import contextlib
import io
import signal
import sys
import threading
import warnings

import torch

PROBE_MIME = "application/vnd.coursekit.probe+json"
DEVICE = "cpu"  # the notebook sets its own (the GPU when there is one)

# The check lines a test cell prints, which coursekit's parsers read back (coursekit/checks.py).
PASSED, FAILED = "✓", "✗"
TIMED_OUT = "your code ran for more than {seconds} seconds: is there an infinite loop?"
NOT_RUN_AFTER_TIMEOUT = "not run: an earlier check of this exercise ran out of time"
CELL_TIMED_OUT = "not run: the check cell ran out of time"
NO_ANSWER = "no answer from your code for this check"
NOT_IMPLEMENTED = "not implemented yet"
SAME_ERROR = "the same error as above"
# A one-line hint per kind of crash, after the error's own message.
CRASH_HINTS = {
    "RuntimeError": "check the shapes of the tensors your code combines (print them step by step)",
    "IndexError": "an index or a position is out of range",
    "NameError": "a name is not defined: run the cells above first, and keep the names the notebook gives",
    "AttributeError": "an object lacks the attribute your code uses",
    "TypeError": "a function got arguments of the wrong number or type",
}


def header_line(exercise):
    """The first line a check cell prints."""
    return f"Checking {exercise}:"


def check_line(passed, description, points, reason=""):
    """One check's line: `  ✓ <description> [p/p]` or `  ✗ <description> [0/p]: <reason>`."""
    if passed:
        return f"  {PASSED} {description} [{points}/{points}]"
    return f"  {FAILED} {description} [0/{points}]: {reason}"


def without_repeats(reasons):
    """The reasons of an exercise's checks, in order, with a crash already reported above said once: the same
    failure again reads "the same error as above" (None, for a check that passed, stays None)."""
    seen, result = set(), []
    for reason in reasons:
        repeated = reason is not None and reason in seen and (reason.startswith("your code raised")
                                                               or reason == NOT_IMPLEMENTED)
        result.append(SAME_ERROR if repeated else reason)
        if reason is not None:
            seen.add(reason)
    return result


def summary_line(exercise, earned, checked, points):
    """The line after the checks: the points of the public checks, or of all of them."""
    hidden = points - checked
    if hidden > 0:
        return (f"Public checks: {earned}/{checked} points. "
                f"Hidden checks worth {hidden} more point{'' if hidden == 1 else 's'} run when your work is graded.")
    return f"{exercise}: {earned}/{points} points."


class CheckTimeout(BaseException):
    """Raised in a check that runs for too long (a BaseException, so that `except Exception` doesn't swallow it)."""


def drawn(seed):
    """The seed a check uses: `seed` itself in Colab and on the notebook's own inputs, mixed with the number the
    grader draws while grading (Checks.salt), so that no input of a graded check is known before it runs."""
    if not Checks.salt:
        return seed
    return (seed * 1_000_003 + Checks.salt) % 2**62


class Checks:
    """Runs the checks of one exercise, prints one line per check and adds up the points earned.

    A check that runs longer than `seconds` is stopped (an infinite loop, say), and the exercise's
    remaining checks are skipped.
    """

    mode = "local"
    seconds = 15   # every check takes well under a second when the code is right
    registry = {}  # exercise -> the checks its check cell ran last, which the "Check my work" cell runs again
    recorded = []  # record mode: every Checks made, in order
    salt = 0           # the seeds' salt now (see `drawn`): 0 but while a graded probe runs on drawn inputs
    grading_salt = 0   # probe and reference modes: the salt the grader drew for this check cell
    references = []    # reference mode: (status, data) of each check of the cell, in order

    def __init__(self, exercise, points):
        self.exercise, self.points = exercise, points
        self.earned, self.checked, self.timed_out = 0, 0, False
        self.failures = []  # (description, reason) of each failed check
        self.entries = []   # (description, points, verdict) of each check, in order
        if self.mode == "record":
            Checks.recorded.append(self)
            return
        Checks.registry[exercise] = []
        if self.mode == "local":
            print(header_line(exercise))

    def _run(self, test):
        """Runs `test` with a time limit, where the platform has alarms (Linux and macOS, main thread)."""
        if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
            return test()

        def stop(signum, frame):
            raise CheckTimeout()

        previous = signal.signal(signal.SIGALRM, stop)
        signal.alarm(self.seconds)
        try:
            return test()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    def _probe(self, probe):
        """(status, data or error) of running the probe: "ok", "error" (the student's code raised), "timeout",
        "skipped" (after a time-out). Warnings are shown on the normal output."""
        if self.timed_out:
            return "skipped", None
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(sys.stdout):
            warnings.simplefilter("always")
            try:
                return "ok", self._run(probe)
            except CheckTimeout:
                self.timed_out = True
                return "timeout", None
            except AssertionError as error:  # a probe may check what it needs before going on
                return "failed", str(error) or "a check failed"
            except Exception as error:
                return "error", (type(error).__name__, str(error))
            finally:
                if self.mode == "local":
                    for warning in caught:
                        print(f"    (warning: {warning.message})")

    def _probe_drawn(self, probe):
        """The probe's (status, data) on the inputs drawn while grading (Checks.grading_salt)."""
        Checks.salt = Checks.grading_salt
        try:
            return self._probe(probe)
        finally:
            Checks.salt = 0

    def check(self, description, points, probe, verdict, compare=None, vouched_by=None):
        """Runs one check: `probe()` gives the data, `verdict(data)` judges it (see the module's docstring).

        While graded, its points also need the probe's data on drawn inputs to match the grader's reference: the
        solution's data for the same inputs, compared by `same_data`, or by the grader-side function `compare`
        names (`compare(data, reference)` raises AssertionError). `vouched_by` names another check of the cell
        instead, for data no reference can fix: this check then earns its points only when that one does."""
        if self.mode == "record":
            self.entries.append((description, points, verdict, compare, vouched_by))
            return None
        if self.mode == "reference":
            Checks.references.append((None, None) if vouched_by is not None else self._probe_drawn(probe))
            return None
        Checks.registry.setdefault(self.exercise, []).append((description, points, probe, verdict))
        self.checked += points
        status, result = self._probe(probe)
        if self.mode == "probe":
            index = len(Checks.registry[self.exercise]) - 1
            send_probe(self.exercise, index, description, status, result)
            if vouched_by is None:
                send_probe(self.exercise, index, description, *self._probe_drawn(probe), drawn=True)
            return None
        if status == "ok":
            judge = verdict if callable(verdict) else globals()[verdict]
            status, result = self._probe(lambda: judge(result))
        reason = reason_for(status, result, self.seconds)
        passed = reason is None
        if passed:
            self.earned += points
        else:
            shown = without_repeats([r for _, r in self.failures] + [reason])[-1]
            self.failures.append((description, reason))
            reason = shown
        print(check_line(passed, description, points, reason))
        return passed

    def score(self):
        """The points earned (local mode): the cell's last expression. While graded, the grader writes it."""
        if self.mode != "local":
            return None
        print(summary_line(self.exercise, self.earned, self.checked, self.points))
        return min(self.earned, self.points)


def reason_for(status, result, seconds):
    """Why a check failed, in words, from what its probe or verdict gave; None when it passed."""
    if status == "ok":
        return None
    if status == "failed":
        return result
    if status == "error":
        name, message = result
        if name == "NotImplementedError":
            return NOT_IMPLEMENTED
        hint = CRASH_HINTS.get(name)
        return f"your code raised {name}: {message}" + (f" ({hint})" if hint else "")
    if status == "timeout":
        return TIMED_OUT.format(seconds=seconds)
    if status == "skipped":
        return NOT_RUN_AFTER_TIMEOUT
    return NO_ANSWER


def send_probe(exercise, index, description, status, result, drawn=False):
    """Probe mode: sends one probe's data out of the kernel, as a display message for the grader (`drawn`: the
    data on the inputs drawn while grading)."""
    from IPython.display import display

    message = {"exercise": exercise, "index": index, "description": description, "status": status, "drawn": drawn}
    if status == "ok":
        try:
            message.update(pack(result))
        except Exception as error:  # data that can't be packed: the grader says so
            message.update(status="error", error=["unpackable data", f"{type(error).__name__}: {error}"[:500]])
    elif status == "error":
        message["error"] = [result[0][:100], result[1][:1000]]
    elif status == "failed":
        message["error"] = ["", result[:1000]]
    display({PROBE_MIME: message}, raw=True)


# ------------------------------------------------------------------------------ data across the boundary

class Other:
    """A value of a type that doesn't cross the boundary (an object of the student's, a numpy number...):
    only its type's name does."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name}>"


def pack(value):
    """Probe data as JSON-able structure plus the tensors in one safetensors blob (base64)."""
    from safetensors.torch import save

    tensors = {}

    def encode(v, depth):
        if depth > 8:
            return {"o": "too deeply nested data"}
        if isinstance(v, torch.Tensor):
            name = str(len(tensors))
            tensors[name] = torch.Tensor.as_subclass(v.detach(), torch.Tensor).to("cpu").contiguous().clone()
            return {"t": name}
        if v is None or type(v) in (bool, int, float, str):
            return {"v": v}
        if isinstance(v, (list, tuple)):
            return {"l": [encode(x, depth + 1) for x in v]}
        if isinstance(v, dict):
            return {"d": {str(k): encode(x, depth + 1) for k, x in v.items()}}
        return {"o": f"{type(v).__module__}.{type(v).__qualname__}".removeprefix("builtins.")}

    structure = encode(value, 0)
    return {"data": structure, "tensors": base64.b64encode(save(tensors) if tensors else b"").decode("ascii")}


class ProbeDataError(ValueError):
    """Probe data that is not what `pack` writes."""


MAX_PROBE_BYTES = 16 * 2**20  # far more than any probe needs (a few KB): anything larger is refused


def unpack(message):
    """The grader's side of `pack`: plain tensors, numbers, strings, lists and dicts, or ProbeDataError."""
    from safetensors.torch import load

    if not isinstance(message, dict) or not isinstance(message.get("tensors"), str):
        raise ProbeDataError("not probe data")
    if len(message["tensors"]) > MAX_PROBE_BYTES * 4 // 3 + 4:
        raise ProbeDataError("probe data too large")
    try:
        blob = base64.b64decode(message["tensors"], validate=True)
        tensors = load(blob) if blob else {}
    except Exception as error:
        raise ProbeDataError(f"unreadable tensors ({type(error).__name__})") from None
    if any(type(t) is not torch.Tensor for t in tensors.values()):
        raise ProbeDataError("not plain tensors")

    def decode(node, depth):
        if depth > 9 or not isinstance(node, dict) or len(node) != 1:
            raise ProbeDataError("malformed probe data")
        (kind, v), = node.items()
        if kind == "t" and isinstance(v, str) and v in tensors:
            return tensors[v]
        if kind == "v" and (v is None or type(v) in (bool, int, float, str)):
            return v
        if kind == "l" and isinstance(v, list):
            return [decode(x, depth + 1) for x in v]
        if kind == "d" and isinstance(v, dict):
            return {str(k): decode(x, depth + 1) for k, x in v.items()}
        if kind == "o" and isinstance(v, str):
            return Other(v[:200])
        raise ProbeDataError("malformed probe data")

    return decode(message.get("data"), 0)


# ------------------------------------------------------------------------------------ helpers for checks

@contextlib.contextmanager
def replaced(**names):
    """Temporarily replaces global names (e.g. `CausalSelfAttention`) with other versions.

    The checks of an exercise use it to build your class on stand-ins for the earlier exercises, so that a
    mistake in an earlier exercise never costs points in a later one.
    """
    namespace = globals()
    saved = {name: namespace[name] for name in names if name in namespace}
    namespace.update(names)
    try:
        yield
    finally:
        for name in names:
            if name in saved:
                namespace[name] = saved[name]
            else:
                namespace.pop(name, None)


@contextlib.contextmanager
def wrapped(name, wrapper):
    """Temporarily replaces the global `name` by `wrapper(its value)` (None when the notebook has none yet): the checks
    show your code their own view of a notebook object, such as the tokenizer's ids in lm_loss's checks."""
    with replaced(**{name: wrapper(globals().get(name))}):
        yield


def expect_tensor(value, shape, what="the output"):
    """Fails with a plain message unless `value` is a tensor of the given shape."""
    type_name = value.type_name if isinstance(value, Other) else type(value).__name__
    assert isinstance(value, torch.Tensor), f"{what} should be a torch.Tensor, not {type_name}"
    assert tuple(value.shape) == tuple(shape), f"{what} should have shape {tuple(shape)}, not {tuple(value.shape)}"


def expect_numbers(value, expected, mistakes=(), what="the output", atol=1e-4, behaviour=None):
    """Fails unless the tensor `value` holds the numbers `expected` (nested lists, as written in the notebook).

    `mistakes` pairs a message with the numbers that mistake would give, for the same inputs: when `value` matches
    one, the message says which mistake it is. NaN is named as such, with its usual causes. Otherwise `behaviour`
    (see `unexplained`) says what the output is consistent with."""
    expected = torch.tensor(expected, dtype=torch.float32)
    expect_tensor(value, expected.shape, what)
    value = value.detach().float().cpu()
    if torch.allclose(value, expected, atol=atol, rtol=atol):
        return
    for message, numbers in mistakes:
        if torch.allclose(value, torch.tensor(numbers, dtype=torch.float32), atol=atol, rtol=atol):
            raise AssertionError(f"wrong values in {what}: {message}")
    if torch.isnan(value).any():
        raise AssertionError(f"{what} contains NaN: is a row of attention scores entirely masked, or is -inf "
                             "multiplied by 0 somewhere?")
    raise AssertionError(unexplained(f"wrong values in {what}", (value - expected).abs().max().item(), behaviour))


def unexplained(wrong, difference, behaviour=None):
    """The message of values that no listed mistake explains: `wrong` (what is wrong), what the output is consistent
    with, and the largest difference. `behaviour` is a function giving that sentence (or None), from what further
    questions to your code found out (see `asked`): it runs only here, once the values are known to be wrong, and a
    diagnosis that fails says nothing rather than failing the check."""
    try:
        said = behaviour() if behaviour else None
    except Exception:
        said = None
    return wrong + (f": {said}" if said else "") + f" (largest difference from the expected values: {difference:.3g})"


def asked(question):
    """Diagnosis by behaviour: when values are wrong in a way no listed mistake explains, a check asks your code
    further questions whose answers don't depend on knowing the mistake, and says what its output is consistent
    with. `asked` gives the answer of `question()` (a further call of your code), or None when it raised: these
    questions earn no points and never fail a check by themselves."""
    try:
        return question()
    except Exception:
        return None


def seeded_randn(*shape, seed, scale=1.0):
    """A seeded normal tensor on DEVICE: the same numbers on every machine, and in the grader (drawn while graded)."""
    generator = torch.Generator().manual_seed(drawn(seed))
    return (torch.randn(*shape, generator=generator) * scale).to(DEVICE)


def seeded_randint(high, shape, seed):
    """Seeded integers in [0, high) on DEVICE (drawn while graded)."""
    generator = torch.Generator().manual_seed(drawn(seed))
    return torch.randint(0, high, shape, generator=generator).to(DEVICE)


def same_shape(data, reference, what="the output"):
    """A check of a shape alone (`compare="same_shape"`): the output on drawn inputs has the reference's shape. A
    shape is all it vouches for: the points of values need `same_data`."""
    assert isinstance(data, torch.Tensor), f"{what} on other inputs is not a tensor"
    assert tuple(data.shape) == tuple(reference.shape), (
        f"{what} on other inputs has shape {tuple(data.shape)}, not {tuple(reference.shape)}")


def same_data(data, reference, atol=1e-4, what="the output"):
    """Fails unless probe data matches the reference's: the same structure, equal numbers and strings, tensors of
    the same shape and values (within `atol`, relative and absolute)."""
    if isinstance(reference, torch.Tensor):
        assert isinstance(data, torch.Tensor), f"{what} is not a tensor"
        assert tuple(data.shape) == tuple(reference.shape), f"{what} has shape {tuple(data.shape)}, not {tuple(reference.shape)}"
        data, reference = data.detach().double().cpu(), reference.detach().double().cpu()
        assert torch.allclose(data, reference, atol=atol, rtol=atol, equal_nan=False), f"{what} has other values"
    elif isinstance(reference, (list, tuple)):
        assert isinstance(data, (list, tuple)) and len(data) == len(reference), f"{what} has another structure"
        for i, (d, r) in enumerate(zip(data, reference, strict=True)):
            same_data(d, r, atol, f"{what}[{i}]")
    elif isinstance(reference, dict):
        assert isinstance(data, dict) and sorted(data) == sorted(reference), f"{what} has other keys"
        for key in reference:
            same_data(data[key], reference[key], atol, f"{what}[{key!r}]")
    elif isinstance(reference, float) and not isinstance(data, bool) and isinstance(data, (int, float)):
        assert abs(data - reference) <= atol * (1 + abs(reference)), f"{what} is another number"
    else:
        assert type(data) is type(reference) and data == reference, f"{what} differs"


def check_my_work(exercises, grading=False):
    """Runs the checks of every exercise's check cell again, on your current code, and prints one line per exercise."""
    if grading or Checks.mode != "local":
        print("Check my work is skipped while the notebook is graded: the check cell below each exercise counts.")
        return
    print("Check my work: the public checks of each exercise, run again on your current code.")
    passing = 0
    for exercise in exercises:
        if exercise not in Checks.registry:
            print(f"  ? {exercise}: its check cell has not run yet. Run it, or the whole notebook (Runtime > Run all).")
            continue
        entries, total = Checks.registry[exercise], len(Checks.registry[exercise])
        with contextlib.redirect_stdout(io.StringIO()):  # one line per exercise, not per check
            checks = Checks(exercise, points=0)
            passed = sum(bool(checks.check(description, points, probe, verdict))
                         for description, points, probe, verdict in entries)
        passing += passed == total
        print(f"  {PASSED if passed == total else FAILED} {exercise}: {passed}/{total} public checks passed "
              f"({checks.earned}/{checks.checked} points)")
        for description, reason in checks.failures:
            print(f"      {FAILED} {description}: {reason}")
    print(f"{passing}/{len(exercises)} exercises pass their public checks. Hidden checks also run when your work "
          "is graded, so passing the public checks is a good sign, not a guarantee.")
# --- end coursekit/notebook_checks.py ---

DEVICE = torch.device(device)
# While your notebook is graded, its checks only call your code and send what it returns to the grader,
# which computes the points outside this notebook.
Checks.mode = "probe" if GRADING else "local"


class StandInLM(nn.Module):
    """A stand-in language model for the checks of sample and beam_search: they don't depend on the model you train.

    Its logits at each position depend on the tokens up to it, at most seq_len of them (it fails on a longer context).
    A `peaked` model gives, at each position, almost all the probability to one token (its logit is +20, the others'
    -20): sampling then picks that token whatever the random draws, so the checks know which tokens to expect. Its
    weights come from `seed`; while graded, its tokens are relabeled (see `relabeling`)."""

    def __init__(self, seed, vocab_size=10, seq_len=4, dropout=0.0, peaked=True):
        super().__init__()
        torch.manual_seed(seed)
        self.seq_len, self.peaked = seq_len, peaked
        self.tokens, self.positions = nn.Embedding(vocab_size, 8), nn.Embedding(seq_len, 8)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(8, vocab_size)
        inverse = relabeling(vocab_size).argsort()  # token relabeling[t] gets the embedding and logit of token t
        with torch.no_grad():
            for weight in (self.tokens.weight, self.head.weight, self.head.bias):
                weight.copy_(weight[inverse])

    def forward(self, input_ids):
        T = input_ids.shape[1]
        if T > self.seq_len:
            raise IndexError(f"the model got {T} tokens, more than its seq_len of {self.seq_len}")
        x = self.dropout(self.tokens(input_ids) + self.positions(torch.arange(T, device=input_ids.device)))
        logits = self.head(torch.tanh(x.cumsum(dim=1)))  # (B, T, vocab_size)
        if self.peaked:
            return 40.0 * F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float() - 20.0
        return logits


def relabeling(vocab_size):
    """How the stand-in models StandInLM and TableLM name their tokens: token t is token relabeling[t]. On the notebook's
    own inputs, no change; while graded, a permutation of the vocabulary drawn with the grader's salt, that moves every
    token. A model and its prompts relabeled alike give the same tokens, relabeled: every answer, right or wrong,
    decides as it does on the notebook's own inputs, on token ids and weights no one knew before."""
    if not Checks.salt:
        return torch.arange(vocab_size)
    generator = torch.Generator().manual_seed(drawn(900 + vocab_size))
    while True:
        permutation = torch.randperm(vocab_size, generator=generator)
        if not (permutation == torch.arange(vocab_size)).any():
            return permutation


def relabeled_ids(values, vocab_size):
    """Token ids (nested lists, or a tensor) of the notebook's own inputs, relabeled as the stand-in models are."""
    return relabeling(vocab_size)[torch.as_tensor(values).long().cpu()].to(DEVICE)


def own_ids(high, shape, seed):
    """The seeded token ids of the notebook's own inputs (seeded_randint), relabeled as the stand-in models are."""
    return relabeled_ids(own_input(lambda: seeded_randint(high, shape, seed=seed)), high)


def own_input(make):
    """What `make()` gives on the notebook's own inputs (a seeded input that the stand-ins' relabeling then changes)."""
    salt, Checks.salt = Checks.salt, 0
    try:
        return make()
    finally:
        Checks.salt = salt


class UnigramLM(nn.Module):
    """A stand-in language model whose next-token logits are always `logits`, whatever the context (at most seq_len
    tokens)."""

    def __init__(self, logits, seq_len=32):
        super().__init__()
        self.seq_len = seq_len
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32).detach().cpu().clone(), requires_grad=False)

    def forward(self, input_ids):
        B, T = input_ids.shape
        if T > self.seq_len:
            raise IndexError(f"the model got {T} tokens, more than its seq_len of {self.seq_len}")
        return self.logits.expand(B, T, -1).clone()  # (B, T, vocab_size)


class TableLM(nn.Module):
    """A stand-in language model whose next-token logits depend only on the last token: row t of `table` (V, V) after
    token t. While graded, its tokens are relabeled (see `relabeling`)."""

    def __init__(self, table, seq_len=8):
        super().__init__()
        self.seq_len = seq_len
        table = torch.as_tensor(table, dtype=torch.float32).detach().cpu()
        inverse = relabeling(table.shape[-1]).argsort()
        self.table = nn.Parameter(table[inverse][:, inverse].clone(), requires_grad=False)

    def forward(self, input_ids):
        if input_ids.shape[1] > self.seq_len:
            raise IndexError(f"the model got {input_ids.shape[1]} tokens, more than its seq_len of {self.seq_len}")
        return self.table[input_ids]  # (B, T, V)


class StandIns:
    """Stand-ins for your apply_temperature, top_k_filter and top_p_filter in the checks of sample, so that a mistake in
    an earlier exercise never costs points in sample. They are not the answers: each one notes how sample calls it and,
    when `removes` says so, removes one token (its logit becomes -inf), so that the checks can see that sample uses
    what it returns. Called with None (no temperature, no top_k, no top_p), they change nothing, unless `even_with_none`
    (then the tokens sample draws show that it called them)."""

    def __init__(self, removes=None, even_with_none=False):
        self.removes, self.even_with_none = removes or {}, even_with_none
        self.calls = {"apply_temperature": [], "top_k_filter": [], "top_p_filter": []}

    def _call(self, name, logits, value):
        self.calls[name].append({"logits": logits.detach().clone(), "value": value})
        result = logits.clone()
        if (value is not None or self.even_with_none) and name in self.removes:
            result[..., self.removes[name]] = float("-inf")
        return result

    def functions(self):
        """The stand-ins, by the names of your functions (for `replaced`)."""

        def apply_temperature(logits, temperature):
            return self._call("apply_temperature", logits, temperature)

        def top_k_filter(logits, k):
            return self._call("top_k_filter", logits, k)

        def top_p_filter(logits, p):
            return self._call("top_p_filter", logits, p)

        return {"apply_temperature": apply_temperature, "top_k_filter": top_k_filter, "top_p_filter": top_p_filter}


def own_or_drawn(values, seed, scale=1.0):
    """A check's input: the numbers `values` (nested lists) on the notebook's own inputs; while graded, on the inputs
    drawn with the grader's salt (see `drawn`), normal numbers of the same shape (`scale`: their standard deviation)."""
    if not Checks.salt:
        return torch.tensor(values, dtype=torch.float32, device=DEVICE)
    return seeded_randn(*torch.tensor(values).shape, seed=seed, scale=scale)


def one_token_prompts(rows, high, seed):
    """`rows` prompts of one token: token 0 on the notebook's own inputs, tokens in [0, high) drawn while graded."""
    if not Checks.salt:
        return torch.zeros(rows, 1, dtype=torch.long, device=DEVICE)
    return seeded_randint(high, (rows, 1), seed=seed)


def raised(error, where, advice=""):
    """The reason of a check whose probe crashed in your code: which error, on which input, and what to look at."""
    return f"your code raised {type(error).__name__} {where} ({error})" + (f": {advice}" if advice else "")


def expect_tokens(value, expected, mistakes=(), what="the output"):
    """Fails unless the tensor of token ids `value` holds the tokens `expected` (nested lists); names the known mistake
    (message, tokens) it matches, or says which tokens it got."""
    expect_tensor(value, torch.tensor(expected).shape, what)
    got = value.detach().long().cpu().tolist()
    if got == expected:
        return
    for message, tokens in mistakes:
        if got == tokens:
            raise AssertionError(f"wrong tokens in {what}: {message}")
    raise AssertionError(f"wrong tokens in {what}: {got}, where {expected} was expected")


def _token_list(tokens):
    return f"token {tokens[0]}" if len(tokens) == 1 else "tokens " + ", ".join(str(t) for t in tokens)


def filtering_reason(value, expected, what):
    """Why the filtered logits `value` differ from `expected` (-inf for the removed tokens), in tokens: the first row
    that keeps other tokens, or kept tokens whose logits changed; None when they agree."""
    value, expected = value.detach().float().cpu(), torch.as_tensor(expected, dtype=torch.float32)
    if torch.isnan(value).any():
        return f"{what} contains NaN"
    kept, expected_kept = value > -math.inf, expected > -math.inf
    rows, V = kept.reshape(-1, kept.shape[-1]), kept.shape[-1]
    for index, (row, expected_row) in enumerate(zip(rows, expected_kept.reshape(-1, V), strict=True)):
        if not torch.equal(row, expected_row):
            where = [] if kept.dim() == 1 else list(torch.unravel_index(torch.tensor(index), kept.shape[:-1]))
            row_name = f"row {where[0].item()}" if len(where) == 1 else f"row {tuple(w.item() for w in where)}"
            missing = (expected_row & ~row).nonzero().flatten().tolist()
            extra = (row & ~expected_row).nonzero().flatten().tolist()
            parts = ([f"{_token_list(missing)} should be kept"] if missing else []) + (
                [f"{_token_list(extra)} should be removed (-inf)"] if extra else [])
            return f"wrong tokens kept in {what}" + (f", {row_name}" if where else "") + ": " + " and ".join(parts)
    if not torch.allclose(value[kept], expected[kept], atol=1e-4, rtol=1e-4):
        return f"wrong values in {what}: the logits of the kept tokens should stay as they are"
    return None


def batch_and_rows(name, function, logits, value, what):
    """What `function` (top_k_filter or top_p_filter) gives for the batch `logits` (..., V), and for each of its rows
    alone (shape (1, V)): the checks of batches compare them. A crash on one row is told by the check of one row."""
    try:
        alone = [function(row[None].clone(), value) for row in logits.reshape(-1, logits.shape[-1])]
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError):
        raise AssertionError(f"not checked: {name} fails for one row of logits (see the check above)") from None
    try:
        batch = function(logits.clone(), value)
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as error:
        raise AssertionError(raised(error, f"for {what}", "each row should be filtered on its own, along the last "
                                    "dimension")) from None
    return {"batch": batch, "alone": alone, "logits": logits, "value": value}


def expect_rows_filtered_alone(data, shape, mistakes=(), what="the output"):
    """Fails unless each row of the filtered batch (batch_and_rows) is what the function gives for that row alone;
    names the known mistake (message, numbers) the batch matches, if any, and fails when nothing is filtered."""
    batch = data["batch"]
    type_name = batch.type_name if isinstance(batch, Other) else type(batch).__name__
    assert isinstance(batch, torch.Tensor), f"{what} should be a torch.Tensor, not {type_name}"
    assert tuple(batch.shape) == tuple(shape), (
        f"{what} should have the shape of the logits, {tuple(shape)}, not {tuple(batch.shape)}: keep every token, with "
        "-inf for the removed ones")
    assert not torch.equal(batch.detach().float().cpu(), data["logits"].float().cpu()), (
        f"wrong values in {what}: the logits come back unchanged, nothing is filtered (the vocabulary is the last "
        "dimension, and the dimensions before it are batch dimensions)")
    rows = batch.detach().float().cpu().reshape(-1, shape[-1])
    for index, alone in enumerate(data["alone"]):
        assert isinstance(alone, torch.Tensor) and alone.numel() == shape[-1], (
            "not checked: the output for one row has the wrong shape (see the check above)")
        if not torch.allclose(rows[index], alone.detach().float().cpu().reshape(-1), atol=1e-5, equal_nan=True):
            for message, numbers in mistakes:
                if torch.allclose(batch.detach().float().cpu(), torch.tensor(numbers, dtype=torch.float32), atol=1e-4):
                    raise AssertionError(f"wrong values in {what}: {message}")
            where = [w.item() for w in torch.unravel_index(torch.tensor(index), tuple(shape[:-1]))]
            raise AssertionError(f"wrong values in {what}: row {where[0] if len(where) == 1 else tuple(where)} is "
                                 "filtered differently in the batch than on its own: each row of a batch should be "
                                 "filtered on its own")


def expect_logits(value, expected, mistakes=(), what="the output"):
    """Fails unless the filtered logits `value` are `expected` (nested lists, -math.inf for the removed tokens); names
    the known mistake (message, numbers) it matches, or says which tokens are wrong."""
    expected_tensor = torch.tensor(expected, dtype=torch.float32)
    type_name = value.type_name if isinstance(value, Other) else type(value).__name__
    assert isinstance(value, torch.Tensor), f"{what} should be a torch.Tensor, not {type_name}"
    assert tuple(value.shape) == tuple(expected_tensor.shape), (
        f"{what} should have the shape of the logits, {tuple(expected_tensor.shape)}, not {tuple(value.shape)}: keep "
        "every token, with -inf for the removed ones")
    values, removed = value.detach().float().cpu(), expected_tensor == -math.inf
    if torch.allclose(values, expected_tensor, atol=1e-4, rtol=1e-4):
        return
    if torch.allclose(values[~removed], expected_tensor[~removed], atol=1e-4, rtol=1e-4) and removed.any():
        got = values[removed]
        if torch.isfinite(got).all() and (got < -1e3).all():
            raise AssertionError(f"wrong values in {what}: the removed tokens should get the logit -inf "
                                 "(float('-inf')), not a large negative number")
    for message, numbers in mistakes:
        if torch.allclose(values, torch.tensor(numbers, dtype=torch.float32), atol=1e-4, rtol=1e-4):
            raise AssertionError(f"wrong values in {what}: {message}")
    raise AssertionError(filtering_reason(values, expected_tensor, what) or f"wrong values in {what}")


# %% tags=["grader-only"]
# Grader-only: the tools of the hidden checks' verdicts. Cells tagged grader-only never leave the grader: they are
# not in the release, the solution or the gradebook, and the student's kernel never runs them. The probes of the
# hidden checks (in the test cells) do run there: they call the student's code and return plain data, which the
# verdicts below judge.
TOLERANCE = dict(atol=1e-4, rtol=1e-4)


def _close(a, b):
    """Whether two tensors have the same shape and values (-inf matching -inf)."""
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.detach().float().cpu(), b.detach().float().cpu(), equal_nan=True, **TOLERANCE))


def _expect_values(output, expected, variants=(), what="the output"):
    """Fails unless `output` matches `expected`; names the known mistake (message, output) it matches, if any."""
    expect_tensor(output, expected.shape, what)
    if _close(output, expected):
        return
    for message, wrong in variants:
        if not _close(wrong, expected) and _close(output, wrong):
            raise AssertionError(f"wrong values in {what}: {message}")
    if torch.isnan(output.float()).any():
        raise AssertionError(f"{what} contains NaN")
    difference = (output.detach().float().cpu() - expected.float()).abs()
    difference = difference[torch.isfinite(difference)]
    raise AssertionError(f"wrong values in {what}" + (f" (largest difference from the expected values: "
                                                       f"{difference.max().item():.3g})" if difference.numel() else ""))


def _expect_filtered(output, expected, variants=(), what="the output"):
    """_expect_values for filtered logits: when no known mistake matches, says which tokens are wrong."""
    expect_tensor(output, expected.shape, what)
    if _close(output, expected):
        return
    for message, wrong in variants:
        if not _close(wrong, expected) and _close(output, wrong):
            raise AssertionError(f"wrong values in {what}: {message}")
    raise AssertionError(filtering_reason(output, expected, what) or f"wrong values in {what}")


def _ref_peaked_sample(model, input_ids, max_new_tokens, position=-1, crop="last"):
    """What sampling gives with a peaked StandInLM: its one likely token at each step (`position` and `crop` reproduce
    known mistakes: the first position's logits, a context cropped to its first seq_len tokens)."""
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            context = input_ids[:, -model.seq_len:] if crop == "last" else input_ids[:, :model.seq_len]
            next_ids = model(context)[:, position].argmax(dim=-1, keepdim=True)
            input_ids = torch.cat([input_ids, next_ids], dim=1)
    return input_ids


# %% [markdown]
# # A small language model to decode from
#
# Decoding strategies work with any language model, so we use a small one that trains in a few seconds: a
# **character-level** model, whose tokens are single characters. It reads the opening of *Alice's Adventures in
# Wonderland* by Lewis Carroll (1865, in the public domain), a text short enough to fit in the cell below.

# %% nbgrader={"grade": false, "grade_id": "corpus", "locked": true, "schema_version": 3, "solution": false, "task": false}
TEXT = """Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: once or \
twice she had peeped into the book her sister was reading, but it had no pictures or conversations in it, "and what \
is the use of a book," thought Alice "without pictures or conversations?"

So she was considering in her own mind (as well as she could, for the hot day made her feel very sleepy and stupid), \
whether the pleasure of making a daisy-chain would be worth the trouble of getting up and picking the daisies, when \
suddenly a White Rabbit with pink eyes ran close by her.

There was nothing so very remarkable in that; nor did Alice think it so very much out of the way to hear the Rabbit \
say to itself, "Oh dear! Oh dear! I shall be late!" (when she thought it over afterwards, it occurred to her that \
she ought to have wondered at this, but at the time it all seemed quite natural); but when the Rabbit actually took \
a watch out of its waistcoat-pocket, and looked at it, and then hurried on, Alice started to her feet, for it \
flashed across her mind that she had never before seen a rabbit with either a waistcoat-pocket, or a watch to take \
out of it, and burning with curiosity, she ran across the field after it, and fortunately was just in time to see \
it pop down a large rabbit-hole under the hedge.

In another moment down went Alice after it, never once considering how in the world she was to get out again.

The rabbit-hole went straight on like a tunnel for some way, and then dipped suddenly down, so suddenly that Alice \
had not a moment to think about stopping herself before she found herself falling down a very deep well.

Either the well was very deep, or she fell very slowly, for she had plenty of time as she went down to look about \
her and to wonder what was going to happen next. First, she tried to look down and make out what she was coming \
to, but it was too dark to see anything; then she looked at the sides of the well, and noticed that they were \
filled with cupboards and book-shelves; here and there she saw maps and pictures hung upon pegs. She took down a \
jar from one of the shelves as she passed; it was labelled "ORANGE MARMALADE", but to her great disappointment it \
was empty: she did not like to drop the jar for fear of killing somebody underneath, so managed to put it into one \
of the cupboards as she fell past it.
"""

# The vocabulary: every character of the text, each one a token.
CHARS = sorted(set(TEXT))
CHAR_IDS = {char: i for i, char in enumerate(CHARS)}


def encode(text):
    """The token ids of `text`, as a batch of one sequence: shape (1, len(text))."""
    return torch.tensor([[CHAR_IDS[char] for char in text]], device=device)


def to_text(ids):
    """The text of a sequence of token ids (a 1-D tensor or a list)."""
    return "".join(CHARS[i] for i in ids.tolist())


print(f"{len(TEXT)} characters, a vocabulary of {len(CHARS)} tokens")


# %% [markdown]
# The model embeds each character, reads the sequence with a GRU (a recurrent network: each position sees the
# characters before it, never the ones after), and turns each position's state into logits for the next character.
# Like the transformer of practical work 2, it maps `input_ids` of shape (B, T) to logits of shape (B, T, V), and the
# logits at position t are a guess for the token at position t + 1. It is trained on windows of `seq_len` characters:
# while decoding, we show it at most its last `seq_len` characters, the context it knows.

# %% nbgrader={"grade": false, "grade_id": "char_model", "locked": true, "schema_version": 3, "solution": false, "task": false}
class CharLM(nn.Module):
    """A character-level language model: embedding, GRU, linear head. Logits (B, T, V) for input_ids (B, T)."""

    def __init__(self, vocab_size, embedding_size=32, hidden_size=64, seq_len=32):
        super().__init__()
        self.seq_len = seq_len  # the length of the windows it is trained on: decoding crops its context to it
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids):
        states, _ = self.gru(self.embedding(input_ids))  # (B, T, hidden_size)
        return self.head(states)                          # (B, T, V)


def train_char_lm(model, text_ids, steps, batch_size=32, lr=1e-2, seed=0):
    """Trains `model` on random windows of `text_ids` (1-D) to predict each next character; returns the last loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(text_ids) - model.seq_len - 1, (batch_size,), generator=generator).tolist()
        windows = torch.stack([text_ids[s:s + model.seq_len + 1] for s in starts])  # (B, seq_len + 1)
        logits = model(windows[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}: loss {loss.item():.3f}")
    model.eval()  # ready to generate
    return loss.item()


# %% [markdown]
# Train it: a few seconds on a CPU. A short training on purpose: the model learns words and bits of sentences, but
# not the whole text by heart, which makes the differences between decoding strategies easy to see. (While your
# notebook is graded, this cell and the examples that use its model are skipped: the checks use models of their own.)

# %% nbgrader={"grade": false, "grade_id": "demo_train_model", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
torch.manual_seed(0)
model = CharLM(len(CHARS)).to(device)
final_loss = train_char_lm(model, encode(TEXT)[0], steps=20 if GRADING else 150)

# %% [markdown]
# # From logits to the next token
#
# Feed the model a prompt: the logits of the **last** position, through a softmax, are its probabilities for the next
# character. Here are its five favourites after `"Alice was "`:

# %% nbgrader={"grade": false, "grade_id": "demo_next_token", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
with torch.no_grad():
    next_logits = model(encode("Alice was "))[:, -1]  # (1, V): the logits of the last position
probabilities = next_logits.softmax(dim=-1)[0]
top = probabilities.topk(5)
for probability, token in zip(top.values.tolist(), top.indices.tolist()):
    print(f"{CHARS[token]!r}: {probability:.3f}")


# %% [markdown]
# **Greedy decoding** (practical work 2) appends the most likely token and starts again. It is simple and
# deterministic: the same prompt always gives the same text. But it has two well-known flaws:
# - **it repeats itself.** Greedy decoding is a fixed function of the context: as soon as the last `seq_len`
#   characters come back to a context seen before, the same characters follow, and the text loops forever. Models
#   also give a high probability to repeating what they have just written, so such loops come quickly; you will see
#   one below, once `sample` is written.
# - **the most likely token at each step does not make the most likely text.** A slightly less likely first token
#   can lead to a far more likely continuation. Beam search, at the end of this notebook, looks for it.
#
# **Sampling** draws the next token at random, with the model's probabilities: the text varies, and loops break.
# But the model spreads a little probability over many unlikely tokens (the *long tail*), and over many steps,
# sampling ends up drawing some of them: one odd character, and the rest of the text goes off track. The decoding
# strategies below reshape the probabilities before drawing: **temperature** makes them sharper or flatter, **top-k**
# and **top-p** cut the tail.

# %% [markdown]
# ## Temperature (10 points)
#
# The temperature $T > 0$ divides the logits before the softmax:
#
# $$ p_i = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)} $$
#
# - $T = 1$ leaves the model's probabilities as they are;
# - $T < 1$ makes them **sharper**: the likely tokens get even more likely, and as $T \to 0$ sampling becomes greedy;
# - $T > 1$ makes them **flatter**: unlikely tokens get more chances, and as $T \to \infty$ every token becomes equally
#   likely.
#
# Complete `apply_temperature`: it returns the logits divided by the temperature, with the same shape as `logits`
# (any shape: the vocabulary is the last dimension). It returns logits, not probabilities: the softmax comes later.
# It returns a new tensor and leaves `logits` as they were: the caller may use them again (the demo below divides the
# same logits by several temperatures), so an in-place `logits /= temperature` would change what it sees next.

# %% nbgrader={"grade": false, "grade_id": "apply_temperature", "locked": false, "schema_version": 3, "solution": true, "task": false}
def apply_temperature(logits, temperature):
    """The logits divided by the temperature (a number > 0), same shape as `logits`, in a new tensor."""
    ### BEGIN SOLUTION
    return logits / temperature
    ### END SOLUTION


# %% [markdown]
# See what the temperature does to the model's probabilities for the character after `"Alice was "`:

# %% nbgrader={"grade": false, "grade_id": "demo_temperature_effect", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
for temperature in (0.5, 1.0, 2.0):
    probabilities = apply_temperature(next_logits, temperature).softmax(dim=-1)[0]
    top = probabilities.topk(5)
    print(f"temperature {temperature}: " + ", ".join(f"{CHARS[t]!r} {p:.3f}" for p, t in zip(top.values.tolist(),
                                                                                            top.indices.tolist())))


# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of apply_temperature.
def _judge_temperature(output, logits, temperature, what):
    if output is None:
        raise AssertionError("apply_temperature returns None: return the new logits")
    _expect_values(output, logits / temperature, [
        (_MULTIPLIED, logits * temperature),
        (_PROBABILITIES, (logits / temperature).softmax(dim=-1)),
        (_PROBABILITIES_DIVIDED, logits.softmax(dim=-1) / temperature),
    ], what=what)


def verdict_temperature_values(outputs):
    for temperature, output in zip(_HIDDEN_TEMPERATURES, outputs, strict=True):
        _judge_temperature(output, _hidden_temperature_logits(), temperature, f"the output for temperature {temperature}")


def verdict_temperature_batch(output):
    _judge_temperature(output, seeded_randn(2, 3, 5, seed=311), 0.25, "the output for logits of shape (2, 3, 5)")


# %% nbgrader={"grade": true, "grade_id": "test_apply_temperature", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of apply_temperature: run this cell after your answer (the lines it prints say what was checked)
"""Checks apply_temperature: values for temperatures 2 and 0.5, temperature 1, any shape (hidden: other inputs)."""
checks = Checks("apply_temperature", points=10)

_MULTIPLIED = "the logits are multiplied by the temperature: divide them by it"
_PROBABILITIES = ("these are probabilities (a softmax): apply_temperature returns the logits divided by the temperature, "
                  "the softmax comes later")
_PROBABILITIES_DIVIDED = ("the probabilities (a softmax) are divided by the temperature: divide the logits instead, "
                          "and return them without a softmax")


def _public_temperature_values():
    return {str(t): apply_temperature(own_or_drawn([[2.0, -1.0, 0.5, 0.0]], seed=301, scale=2.0), t) for t in (2.0, 0.5)}


def _public_temperature_divides(outputs):
    for name in ("2.0", "0.5"):
        assert outputs[name] is not None, "apply_temperature returns None: return the new logits"
    expect_numbers(outputs["2.0"], [[1.0, -0.5, 0.25, 0.0]], [
        (_MULTIPLIED, [[4.0, -2.0, 1.0, 0.0]]),
        (_PROBABILITIES, [[0.48464, 0.10814, 0.22893, 0.17829]]),
        (_PROBABILITIES_DIVIDED, [[0.35505, 0.017677, 0.079222, 0.048051]]),
    ], what="the logits [[2, -1, 0.5, 0]] at temperature 2")
    expect_numbers(outputs["0.5"], [[4.0, -2.0, 1.0, 0.0]], [
        (_MULTIPLIED, [[1.0, -0.5, 0.25, 0.0]]),
        (_PROBABILITIES, [[0.93407, 0.0023153, 0.046505, 0.017108]]),
        (_PROBABILITIES_DIVIDED, [[1.4202, 0.070708, 0.31689, 0.1922]]),
    ], what="the logits [[2, -1, 0.5, 0]] at temperature 0.5")


def _public_temperature_one():
    return {"logits": seeded_randn(3, 5, seed=300), "output": apply_temperature(seeded_randn(3, 5, seed=300), 1.0)}


def _public_temperature_unchanged(data):
    assert data["output"] is not None, "apply_temperature returns None: return the new logits"
    expect_tensor(data["output"], (3, 5))
    assert torch.allclose(data["output"].float(), data["logits"], atol=1e-6), (
        "at temperature 1 the logits should not change")


def _public_temperature_shape():
    """The output for logits of shape (2, 1, 3), and those logits after the call (they must not have changed)."""
    logits = own_or_drawn([[[4.0, -2.0, 1.0]], [[0.0, 8.0, -4.0]]], seed=302, scale=4.0)
    return {"output": apply_temperature(logits, 4.0), "logits_after": logits}


def _public_temperature_any_shape(data):
    output = data["output"]
    assert output is not None, "apply_temperature returns None: return the new logits"
    expect_numbers(output, [[[1.0, -0.5, 0.25]], [[0.0, 2.0, -1.0]]], [(_MULTIPLIED, [[[16.0, -8.0, 4.0]], [[0.0, 32.0, -16.0]]])],
                   what="logits of shape (2, 1, 3) at temperature 4")
    assert torch.equal(data["logits_after"].detach().float().cpu(), torch.tensor([[[4.0, -2.0, 1.0]], [[0.0, 8.0, -4.0]]])), (
        "apply_temperature changed the logits it was given (an in-place division, such as logits /= temperature): "
        "return a new tensor (logits / temperature) and leave the caller's logits as they were: the demo below "
        "divides the same logits by several temperatures")


checks.check("divides the logits by the temperature", 4, _public_temperature_values, _public_temperature_divides)
checks.check("temperature 1 changes nothing", 1, _public_temperature_one, _public_temperature_unchanged)
checks.check("logits of shape (B, T, V), left unchanged", 1, _public_temperature_shape, _public_temperature_any_shape)
### BEGIN HIDDEN TESTS
_HIDDEN_TEMPERATURES = (0.7, 1.5, 3.0)


def _hidden_temperature_logits():
    return seeded_randn(4, 9, seed=310, scale=2.0)


checks.check("other logits and temperatures", 3,
             lambda: [apply_temperature(_hidden_temperature_logits(), t) for t in _HIDDEN_TEMPERATURES],
             "verdict_temperature_values")
checks.check("a (2, 3, 5) batch at temperature 0.25", 1, lambda: apply_temperature(seeded_randn(2, 3, 5, seed=311), 0.25),
             "verdict_temperature_batch")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# ## Top-k filtering (20 points)
#
# Top-k sampling (Fan et al., 2018) draws the next token among the $k$ most likely tokens only. The other tokens
# get the logit $-\infty$: after the softmax their probability is exactly 0, and the $k$ kept tokens share all the
# probability, in the same proportions as before. With $k = 1$, sampling is greedy; with $k$ = the vocabulary size,
# nothing changes.
#
# Top-k cuts the long tail, but its $k$ is the same at every step. When the model is sure of the next character
# (after `"Rabbi"`, surely `"t"`), even $k = 5$ keeps four unlikely tokens; when many continuations make sense
# (after `"the "`), $k = 5$ may cut good ones.
#
# Complete `top_k_filter`. It must:
# - keep the $k$ largest logits of each row (the last dimension is the vocabulary, and the dimensions before it are
#   batch dimensions: (B, V), (B, T, V)...), and set the others to `-inf` (`float("-inf")`);
# - keep each token in its place: the output has the shape of `logits`, and a kept logit keeps its value;
# - keep every token when $k$ is larger than the vocabulary (or equal to it);
# - with ties at the $k$-th largest logit, keep either all the tied tokens or exactly $k$ tokens, as you prefer.
#
# `torch.topk` or `torch.sort` help; there are several good ways to build the result.

# %% nbgrader={"grade": false, "grade_id": "top_k_filter", "locked": false, "schema_version": 3, "solution": true, "task": false}
def top_k_filter(logits, k):
    """The logits with all but the k largest of each row (last dimension) set to -inf, same shape as `logits`."""
    ### BEGIN SOLUTION
    k = min(k, logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]   # (..., 1): the k-th largest logit of each row
    return logits.masked_fill(logits < kth_largest, float("-inf"))
    ### END SOLUTION


# %% [markdown]
# The five characters that top-k keeps after `"Alice was "`, with $k = 5$, and their new probabilities:

# %% nbgrader={"grade": false, "grade_id": "demo_top_k_example", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
filtered = top_k_filter(next_logits, 5)[0]
kept = (filtered > float("-inf")).nonzero().flatten().tolist()
print({CHARS[t]: round(p, 3) for t, p in zip(kept, filtered.softmax(dim=-1)[kept].tolist())})


# %% tags=["grader-only"]
# Grader-only: top-k filtering done right and done wrong, to judge top_k_filter's.
def _ref_top_k(logits, k, mistake=None):
    """Top-k, keeping ties at the k-th largest logit; `mistake` reproduces a known wrong variant."""
    logits = logits.float().cpu()
    V = logits.shape[-1]
    if mistake == "k-1":
        k = k - 1
    elif mistake == "k+1":
        k = k + 1
    if mistake == "smallest":
        kth = torch.topk(logits, min(k, V), dim=-1, largest=False).values[..., -1:]
        return logits.masked_fill(logits > kth, float("-inf"))
    if mistake == "dim0":
        kth = torch.topk(logits, min(k, logits.shape[0]), dim=0).values[-1:]
        return logits.masked_fill(logits < kth, float("-inf"))
    if mistake == "whole batch":
        kth = logits.flatten().topk(min(k, logits.numel())).values[-1]
        return logits.masked_fill(logits < kth, float("-inf"))
    if mistake == "sorted":
        values = logits.sort(dim=-1, descending=True).values
        values[..., min(k, V):] = float("-inf")
        return values
    kth = torch.topk(logits, max(1, min(k, V)), dim=-1).values[..., -1:]
    if k < 1:
        return torch.full_like(logits, float("-inf"))
    return logits.masked_fill(logits < kth, 0.0 if mistake == "zeros" else float("-inf"))


def _is_top_k(output, logits, k):
    """Whether `output` keeps the k largest logits of each row, unchanged, and -inf elsewhere (with ties at the k-th
    largest: all the tied tokens, or exactly k tokens)."""
    if not (isinstance(output, torch.Tensor) and output.shape == logits.shape):
        return False
    output, logits = output.detach().float().cpu(), logits.float().cpu()
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    kept = output > float("-inf")
    same = torch.isclose(output, logits, **TOLERANCE)
    counts, at_least_kth = kept.sum(dim=-1), (logits >= kth).sum(dim=-1)
    return bool((same | ~kept).all() and (output[~kept] == float("-inf")).all() and kept[logits > kth].all()
                and not kept[logits < kth].any() and ((counts == k) | (counts == at_least_kth)).all())


def _judge_top_k(output, logits, k, what):
    expect_tensor(output, logits.shape, what)
    if _is_top_k(output, logits, k):
        return
    variants = [(_TOO_FEW, _ref_top_k(logits, k, "k-1")), (_TOO_MANY, _ref_top_k(logits, k, "k+1")),
                (_SMALLEST, _ref_top_k(logits, k, "smallest")), (_ZEROS, _ref_top_k(logits, k, "zeros")),
                (_SORTED, _ref_top_k(logits, k, "sorted"))]
    if logits.dim() >= 2:
        variants.append((_WHOLE_BATCH, _ref_top_k(logits, k, "whole batch")))
        if logits.dim() == 2:
            variants.append((_WRONG_DIMENSION, _ref_top_k(logits, k, "dim0")))
    removed = _ref_top_k(logits, k) == float("-inf")
    got = output.detach().float().cpu()[removed]
    if removed.any() and torch.isfinite(got).all() and (got < -1e3).all():
        raise AssertionError(f"wrong values in {what}: the removed tokens should get the logit -inf "
                             "(float('-inf')), not a large negative number")
    _expect_filtered(output, _ref_top_k(logits, k), variants, what=what)


def verdict_top_k_values(outputs):
    for k, output in zip((5, 12, 25), outputs, strict=True):
        _judge_top_k(output, seeded_randn(3, 20, seed=400), k, f"the output for k = {k} and 20 logits per row")


def verdict_top_k_one(output):
    _judge_top_k(output, seeded_randn(4, 12, seed=401), 1, "the output for k = 1")


def verdict_top_k_ties(output):
    logits = torch.tensor(_TIED_LOGITS)
    expect_tensor(output, logits.shape, "the output for rows with ties")
    if _is_top_k(output, logits, 2):
        return
    kept = (output.detach().float().cpu() > float("-inf")).sum(dim=-1)
    if (kept < 2).any():
        raise AssertionError("with ties at the k-th largest logit, fewer than k tokens are kept: keep every token whose "
                             "logit is at least the k-th largest (or exactly k of them)")
    _judge_top_k(output, logits, 2, "the output for rows with ties at the k-th largest logit (k = 2)")


def verdict_top_k_batch(data):
    logits = seeded_randn(3, 4, 15, seed=402)
    what = "the output for logits of shape (3, 4, 15) and k = 4"
    expect_rows_filtered_alone(data, (3, 4, 15), [(_WHOLE_BATCH, _ref_top_k(logits, 4, "whole batch").tolist())], what=what)
    _judge_top_k(data["batch"], logits, 4, what)


def verdict_top_k_large(output):
    _judge_top_k(output, seeded_randn(2, 1000, seed=404), 50, "the output for 1000 logits per row and k = 50")


def _filtered_row_by_row(data, reference, filtered, mistakes):
    """compare: the kernel's filtered batch is what the grader computes on the logits drawn while graded, each row
    filtered on its own: right, or with one of the known mistakes of a row (`filtered(logits, value, mistake)`; the
    checks of one row judge which). The kernel's rows filtered alone only explain the verdict: they earn nothing."""
    for mistake in (None, *mistakes):
        try:
            return same_data(data["batch"], filtered(reference["logits"], reference["value"], mistake))
        except AssertionError:
            pass
    raise AssertionError("the filtered batch is not its rows, each filtered on its own")


# The known mistakes of top-k on one row (the others, "dim0" and "whole batch", mix the rows of a batch).
TOP_K_ROW_MISTAKES = ("k-1", "k+1", "smallest", "sorted", "zeros")


def compare_top_k_batch(data, reference):
    _filtered_row_by_row(data, reference, _ref_top_k, TOP_K_ROW_MISTAKES)


def compare_top_k_ties(output, reference):
    """The output for drawn rows with ties, against the solution's, which keeps every tied token (k = 2): an output
    may keep them all, or exactly k of them, and no other token, with their logits unchanged."""
    expect_tensor(output, reference.shape, "the output for rows with ties")
    output, reference = output.detach().float().cpu(), reference.float().cpu()
    kept, reference_kept = output > float("-inf"), reference > float("-inf")
    kth = reference.masked_fill(~reference_kept, float("inf")).min(dim=-1, keepdim=True).values  # the k-th largest logit
    counts = kept.sum(dim=-1)
    assert not torch.isnan(output).any(), "the output for rows with ties contains NaN"
    assert (reference_kept | ~kept).all() and (kept | ~(reference > kth)).all() and (
        (counts == 2) | (counts == reference_kept.sum(dim=-1))).all(), (
        "wrong tokens kept for rows with ties at the k-th largest logit: keep every token whose logit is at least the "
        "k-th largest (or exactly k of them)")
    assert torch.allclose(output[kept], reference[kept], **TOLERANCE), (
        "wrong values for rows with ties: the logits of the kept tokens should stay as they are")


# %% nbgrader={"grade": true, "grade_id": "test_top_k_filter", "locked": true, "points": 20, "schema_version": 3, "solution": false, "task": false}
# @title Checks of top_k_filter: run this cell after your answer (the lines it prints say what was checked)
"""Checks top_k_filter: values on one row, a batch, (B, T, V) logits, k larger than the vocabulary (hidden: other inputs,
ties, large vocabularies)."""
checks = Checks("top_k_filter", points=20)

_TOO_FEW = "one token too few is kept: the k-th largest logit is kept too"
_TOO_MANY = "one token too many is kept: keep the k largest logits, no more"
_SMALLEST = "the k smallest logits are kept: keep the k largest"
_ZEROS = "the removed tokens are set to 0 instead of -inf: exp(0) = 1, so they would still be drawn"
_SORTED = ("the kept logits moved: each token should keep its place (its index in the vocabulary), with -inf for the "
           "removed ones")
_WHOLE_BATCH = "the k largest logits of the whole batch are kept; keep the k largest of each row"
_WRONG_DIMENSION = "the k largest are taken along the wrong dimension: keep the k largest of each row (the last dimension)"


def _public_top_k_row():
    try:
        return {str(k): top_k_filter(own_or_drawn([[1.0, 3.0, -0.5, 2.0, 0.0, 2.5]], seed=405), k) for k in (3, 1)}
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as error:
        raise AssertionError(raised(error, "for one row of 6 logits", "the k largest are taken along the last "
                                    "dimension (the vocabulary)")) from None


def _public_top_k_row_values(outputs):
    expect_logits(outputs["3"], [[-math.inf, 3.0, -math.inf, 2.0, -math.inf, 2.5]], [
        (_TOO_FEW, [[-math.inf, 3.0, -math.inf, -math.inf, -math.inf, 2.5]]),
        (_TOO_MANY, [[1.0, 3.0, -math.inf, 2.0, -math.inf, 2.5]]),
        (_SMALLEST, [[1.0, -math.inf, -0.5, -math.inf, 0.0, -math.inf]]),
        (_ZEROS, [[0.0, 3.0, 0.0, 2.0, 0.0, 2.5]]),
        (_SORTED, [[3.0, 2.5, 2.0, -math.inf, -math.inf, -math.inf]]),
    ], what="the logits [[1, 3, -0.5, 2, 0, 2.5]] filtered with k = 3")
    expect_logits(outputs["1"], [[-math.inf, 3.0, -math.inf, -math.inf, -math.inf, -math.inf]],
                  what="the logits [[1, 3, -0.5, 2, 0, 2.5]] filtered with k = 1")


_TOP_K_BATCH = [[0.5, -1.0, 2.0, 1.5, 0.0, -0.5], [3.0, 2.5, -2.0, 0.0, 1.0, 2.8], [-1.0, -3.0, -0.5, -2.0, -1.5, -2.5]]


def _public_top_k_batch():
    return batch_and_rows("top_k_filter", top_k_filter, own_or_drawn(_TOP_K_BATCH, seed=406, scale=1.5), 2,
                          "a batch of 3 rows of logits")


def _public_top_k_batch_rows(data):
    expect_rows_filtered_alone(data, (3, 6), [
        (_WHOLE_BATCH, [[-math.inf] * 6, [3.0, -math.inf, -math.inf, -math.inf, -math.inf, 2.8], [-math.inf] * 6]),
        (_WRONG_DIMENSION, [[0.5, -1.0, 2.0, 1.5, 0.0, -0.5], [3.0, 2.5, -math.inf, 0.0, 1.0, 2.8],
                            [-math.inf, -math.inf, -0.5, -math.inf, -math.inf, -math.inf]]),
    ], what="a batch of 3 rows filtered with k = 2")


def _public_top_k_3d():
    try:
        top_k_filter(torch.tensor(_TOP_K_BATCH, device=DEVICE), 2)
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError):
        raise AssertionError("not checked: top_k_filter fails for a batch of rows (see the check above)") from None
    logits = own_or_drawn([[[0.2, 1.0, -1.0, 0.5, 2.0], [3.0, -2.0, 0.0, 1.5, 1.0]],
                           [[-0.5, -1.5, -1.0, -2.0, 0.5], [1.0, 4.0, 2.0, 3.0, 0.0]]], seed=407, scale=1.5)
    return batch_and_rows("top_k_filter", top_k_filter, logits, 2, "logits of shape (2, 2, 5)")


def _public_top_k_3d_rows(data):
    expect_rows_filtered_alone(data, (2, 2, 5), what="logits of shape (2, 2, 5) filtered with k = 2")


def _public_top_k_large_k():
    logits = own_or_drawn([[1.0, 3.0, -0.5, 2.0, 0.0, 2.5]], seed=408)
    try:
        return {"logits": logits, "k=6": top_k_filter(logits.clone(), 6), "k=10": top_k_filter(logits.clone(), 10)}
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as error:
        raise AssertionError(raised(error, "when k is at least the vocabulary size (6 tokens, k = 6 or 10)",
                                    "then every token is kept")) from None


def _public_top_k_keeps_all(data):
    for name in ("k=6", "k=10"):
        expect_tensor(data[name], (1, 6), f"the output for {name}")
        assert torch.equal(data[name].float(), data["logits"]), (
            f"with {name} and a vocabulary of 6 tokens, every token should be kept, unchanged")


checks.check("keeps the k largest logits of a row, the others -inf", 4, _public_top_k_row, _public_top_k_row_values)
# The checks of batches compare the kernel's batch with its own rows (to say which row differs); while graded, their
# points need the batch to be its rows filtered on their own, as the grader computes them on drawn logits
# (compare="compare_top_k_batch"), right or with a known mistake of one row (the checks of one row judge which).
checks.check("each row of a batch is filtered on its own", 3, _public_top_k_batch, _public_top_k_batch_rows,
             compare="compare_top_k_batch")
checks.check("logits of shape (B, T, V)", 1, _public_top_k_3d, _public_top_k_3d_rows,
             compare="compare_top_k_batch")
checks.check("k larger than the vocabulary keeps every token", 1, _public_top_k_large_k, _public_top_k_keeps_all)
### BEGIN HIDDEN TESTS
_TIED_LOGITS = [[1.0, 2.0, 2.0, 0.5, 2.0, -1.0], [3.0, 1.0, 1.0, 0.0, -2.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]


def _tied_logits():
    """Rows with ties at the 2nd largest logit: _TIED_LOGITS; while graded, each row of it with its tokens in another
    order, scaled and shifted by drawn numbers (the same ties, the same order: every answer decides as on _TIED_LOGITS)."""
    logits = torch.tensor(_TIED_LOGITS)
    if Checks.salt:
        order = torch.stack([torch.randperm(6, generator=torch.Generator().manual_seed(drawn(403 + row))) for row in range(3)])
        scale, shift = 0.5 + seeded_randn(3, 1, seed=404).abs().cpu(), seeded_randn(3, 1, seed=405).cpu()
        logits = logits.gather(-1, order) * scale + shift
    return logits.to(DEVICE)


checks.check("other logits, k = 5, 12 and 25 (more than the 20 tokens)", 4,
             lambda: [top_k_filter(seeded_randn(3, 20, seed=400), k) for k in (5, 12, 25)], "verdict_top_k_values")
checks.check("k = 1 keeps only the most likely token", 2, lambda: top_k_filter(seeded_randn(4, 12, seed=401), 1),
             "verdict_top_k_one")
checks.check("ties at the k-th largest logit", 2, lambda: top_k_filter(_tied_logits(), 2), "verdict_top_k_ties",
             compare="compare_top_k_ties")
checks.check("a (3, 4, 15) batch", 2,
             lambda: batch_and_rows("top_k_filter", top_k_filter, seeded_randn(3, 4, 15, seed=402), 4, "logits of shape (3, 4, 15)"),
             "verdict_top_k_batch")
checks.check("1000 logits per row, k = 50", 1, lambda: top_k_filter(seeded_randn(2, 1000, seed=404), 50),
             "verdict_top_k_large")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# ## Top-p (nucleus) filtering (25 points)
#
# Top-p sampling, also called nucleus sampling (Holtzman et al., 2020), adapts the number of kept tokens to the
# model's confidence: it keeps the **smallest set of most likely tokens whose probabilities add up to at least $p$**
# (the *nucleus*). When the model is sure of the next token, one or two tokens already reach $p$; when it hesitates,
# many are needed.
#
# For each row:
# 1. the probabilities: the softmax of the logits;
# 2. sort them, the largest first (`torch.sort` also says where each sorted probability came from);
# 3. their cumulative sum: at each sorted position, the total probability of the tokens up to it;
# 4. keep the tokens up to the first one at which the sum reaches $p$, **that one included**: the kept tokens'
#    probabilities then add up to at least $p$. The most likely token is therefore always kept, even when its
#    probability alone exceeds $p$;
# 5. put the decisions back in the vocabulary's order: each token gets the decision of its sorted position;
# 6. set the logits of the removed tokens to `-inf`.
#
# For example, with the probabilities `[0.1, 0.4, 0.05, 0.25, 0.2]` and $p = 0.6$: sorted, they are 0.4 (token 1),
# 0.25 (token 3), 0.2 (token 4), 0.1 (token 0), 0.05 (token 2); their cumulative sums are 0.4, 0.65, ...: the sum
# reaches 0.6 at token 3, so tokens 1 and 3 are kept.
#
# Complete `top_p_filter`. Like `top_k_filter`, it returns logits of the same shape, with `-inf` for the removed
# tokens, filters each row on its own and works with any batch dimensions. $p$ is between 0 and 1 ($p = 1$ keeps
# every token).

# %% nbgrader={"grade": false, "grade_id": "top_p_filter", "locked": false, "schema_version": 3, "solution": true, "task": false}
def top_p_filter(logits, p):
    """The logits with -inf for every token outside the smallest set of most likely tokens whose probabilities reach
    p, for each row (last dimension); same shape as `logits`."""
    ### BEGIN SOLUTION
    probabilities, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)  # each row, the most likely first
    before = probabilities.cumsum(dim=-1) - probabilities  # the probability of the tokens sorted before each one
    remove_sorted = before >= p                             # p is reached without it
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # each decision back at its token's place
    return logits.masked_fill(remove, float("-inf"))
    ### END SOLUTION


# %% [markdown]
# How many characters the nucleus holds ($p = 0.9$) depends on how sure the model is:

# %% nbgrader={"grade": false, "grade_id": "demo_top_p_example", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
for prompt in ("Alice was ", "the Rabbi", "she "):
    with torch.no_grad():
        prompt_logits = model(encode(prompt))[:, -1]  # (1, V)
    size = (top_p_filter(prompt_logits, 0.9) > float("-inf")).sum().item()
    print(f"after {prompt!r}: {size} character{'s' if size > 1 else ''} in the nucleus")


# %% tags=["grader-only"]
# Grader-only: top-p filtering done right and done wrong, to judge top_p_filter's.
def _ref_top_p(logits, p, mistake=None):
    """Top-p filtering; `mistake` reproduces a known wrong variant."""
    logits = logits.float().cpu()
    probabilities = logits.softmax(dim=-1)
    if mistake == "vocabulary order":
        return logits.masked_fill(probabilities.cumsum(dim=-1) - probabilities >= p, float("-inf"))
    if mistake == "no softmax":
        ordered, order = logits.sort(dim=-1, descending=True)
        remove_sorted = ordered.cumsum(dim=-1) - ordered >= p
        return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))
    ordered, order = probabilities.sort(dim=-1, descending=True)
    cumulative = ordered.cumsum(dim=-1)
    if mistake == "crossing removed":
        remove_sorted = cumulative > p
    elif mistake == "top dropped":
        remove_sorted = cumulative > p
        remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
    else:
        remove_sorted = cumulative - ordered >= p
    if mistake == "not put back":
        remove = remove_sorted
    elif mistake == "gather":
        remove = remove_sorted.gather(-1, order)
    elif mistake == "every row":
        flat_order, flat_remove = order.reshape(-1, order.shape[-1]), remove_sorted.reshape(-1, order.shape[-1])
        remove = torch.zeros_like(remove_sorted)
        remove[..., flat_order[flat_remove].unique()] = True
    else:
        remove = remove_sorted.scatter(-1, order, remove_sorted)
    filtered = logits.masked_fill(remove, 0.0 if mistake == "zeros" else float("-inf"))
    return filtered.softmax(dim=-1) if mistake == "probabilities" else filtered


def _is_top_p(output, logits, p, margin=1e-5):
    """Whether `output` is top-p filtering of `logits`; a token whose decision is within `margin` of p (float rounding
    of the cumulative sum) may go either way."""
    if not (isinstance(output, torch.Tensor) and output.shape == logits.shape):
        return False
    output, logits = output.detach().float().cpu(), logits.float().cpu()
    ordered, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    before_sorted = ordered.cumsum(dim=-1) - ordered
    before = before_sorted.scatter(-1, order, before_sorted)  # for each token, the probability sorted before it
    kept = output > float("-inf")
    same = torch.isclose(output, logits, **TOLERANCE)
    return bool((same | ~kept).all() and (output[~kept] == float("-inf")).all() and kept[before < p - margin].all()
                and not kept[before > p + margin].any())


# The known mistakes of top-p on one row (the other, "every row", mixes the rows of a batch).
TOP_P_ROW_MISTAKES = ("vocabulary order", "no softmax", "crossing removed", "top dropped", "not put back", "gather",
                      "zeros", "probabilities")


def compare_top_p_batch(data, reference):
    _filtered_row_by_row(data, reference, _ref_top_p, TOP_P_ROW_MISTAKES)


def _judge_top_p(output, logits, p, what):
    expect_tensor(output, logits.shape, what)
    if _is_top_p(output, logits, p):
        return
    variants = [(_ALL_REMOVED, torch.full_like(logits.float().cpu(), float("-inf"))),
                (_CROSSING_REMOVED, _ref_top_p(logits, p, "crossing removed")),
                (_TOP_DROPPED, _ref_top_p(logits, p, "top dropped")),
                (_NOT_PUT_BACK, _ref_top_p(logits, p, "not put back")), (_GATHERED, _ref_top_p(logits, p, "gather")),
                (_VOCABULARY_ORDER, _ref_top_p(logits, p, "vocabulary order")),
                (_ZEROS, _ref_top_p(logits, p, "zeros")), (_RETURNS_PROBABILITIES, _ref_top_p(logits, p, "probabilities")),
                (_NO_SOFTMAX, _ref_top_p(logits, p, "no softmax")),
                (_EVERYTHING_KEPT, logits.float().cpu())]
    if logits.dim() >= 2:
        variants.insert(1, (_EVERY_ROW, _ref_top_p(logits, p, "every row")))
    removed = _ref_top_p(logits, p) == float("-inf")
    got = output.detach().float().cpu()[removed]
    if removed.any() and torch.isfinite(got).all() and (got < -1e3).all():
        raise AssertionError(f"wrong values in {what}: the removed tokens should get the logit -inf "
                             "(float('-inf')), not a large negative number")
    _expect_filtered(output, _ref_top_p(logits, p), variants, what=what)


def verdict_top_p_values(outputs):
    for p, output in zip((0.9, 0.3, 1.0), outputs, strict=True):
        _judge_top_p(output, _hidden_top_p_logits(), p, f"the output for p = {p} and 20 logits per row")


def verdict_top_p_top_token(output):
    logits = _hidden_peaked_logits()
    if isinstance(output, torch.Tensor) and output.shape == logits.shape and (output == float("-inf")).all(-1).any():
        raise AssertionError(_TOP_DROPPED)
    _judge_top_p(output, logits, 0.5, "the output for rows whose most likely token alone exceeds p = 0.5")


def verdict_top_p_batch(data):
    logits = _hidden_top_p_batch()
    what = "the output for logits of shape (4, 3, 10) and p = 0.75"
    expect_rows_filtered_alone(data, (4, 3, 10), [(_EVERY_ROW, _ref_top_p(logits, 0.75, "every row").tolist())], what=what)
    _judge_top_p(data["batch"], logits, 0.75, what)


def verdict_top_p_large(output):
    _judge_top_p(output, _hidden_top_p_large(), 0.95, "the output for 500 logits per row and p = 0.95")


# %% nbgrader={"grade": true, "grade_id": "test_top_p_filter", "locked": true, "points": 25, "schema_version": 3, "solution": false, "task": false}
# @title Checks of top_p_filter: run this cell after your answer (the lines it prints say what was checked)
"""Checks top_p_filter: values on one row, the most likely token, a batch, (B, T, V) logits (hidden: other inputs,
p = 1, large vocabularies)."""
checks = Checks("top_p_filter", points=25)

_CROSSING_REMOVED = ("the token whose probability makes the sum reach p is removed: keep it, so that the kept "
                     "probabilities add up to at least p")
_TOP_DROPPED = ("no token is left: the most likely token must always be kept, even when its probability alone "
                "exceeds p")
_ALL_REMOVED = "every token is removed: the most likely token, at least, is always kept"
_NOT_PUT_BACK = ("the decisions, taken in sorted order, are applied to the tokens in vocabulary order: give each token "
                 "the decision of its own sorted position")
_GATHERED = ("the decisions are put back in the wrong order (the sorting order applied once more): each sorted "
             "position's decision should go back to the token it came from")
_VOCABULARY_ORDER = ("the cumulative sum runs over the tokens in vocabulary order: sort the probabilities first, the "
                     "largest first")
_EVERYTHING_KEPT = ("every token is kept: only the most likely tokens whose probabilities first reach p stay (is the "
                    "cumulative sum taken over the probabilities, the softmax of the logits?)")
_NO_SOFTMAX = ("the cumulative sum runs over the logits: it should run over the probabilities (the softmax of the "
               "logits), sorted")
_RETURNS_PROBABILITIES = "these are probabilities: top_p_filter returns the logits, with -inf for the removed tokens"
_ZEROS = "the removed tokens are set to 0 instead of -inf: exp(0) = 1, so they would still be drawn"
_EVERY_ROW = "tokens removed in one row are removed in every row: each row of the batch is filtered on its own"


def _top_p_logits(probabilities):
    return torch.tensor(probabilities, device=DEVICE).log()


def clear_of_p(make, ps, margin=2e-5, top_below_p=False):
    """Logits for the checks of top_p_filter: `make(0)` on the notebook's own inputs; while graded, the first drawn
    logits `make(attempt)` whose tokens are all clear of the decision (for each token and each p, the probability
    sorted before it at least `margin` away from p), so that float rounding never decides whether a token is kept; with
    `top_below_p`, rows whose most likely token alone stays below every p, as on the notebook's own inputs."""
    logits = make(0)
    for attempt in range(1, 200):
        if not Checks.salt:
            break
        probabilities = logits.double().softmax(dim=-1).sort(dim=-1, descending=True).values
        before = probabilities.cumsum(dim=-1) - probabilities
        if all((before - p).abs().min() > margin for p in ps) and not (
                top_below_p and (probabilities[..., 0] >= min(ps) - margin).any()):
            break
        logits = make(attempt)
    return logits


def _drawn_top_p_row(probabilities, seed, ps):
    """The logits of `probabilities` (nested lists) on the notebook's own inputs; while graded, drawn ones clear of each
    p, whose most likely token alone stays below p, as in the notebook's rows."""
    return clear_of_p(lambda attempt: _top_p_logits(probabilities) if not Checks.salt else
                      own_or_drawn(probabilities, seed=seed + 7919 * attempt, scale=1.5), ps, top_below_p=True)


def _public_top_p_row():
    try:
        return {str(p): top_p_filter(_drawn_top_p_row([[0.1, 0.4, 0.05, 0.25, 0.2]], 505, (0.6, 0.7)), p)
                for p in (0.6, 0.7)}
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as error:
        raise AssertionError(raised(error, "for one row of 5 logits", "the vocabulary is the last dimension")) from None


def _public_top_p_row_values(outputs):
    expect_logits(outputs["0.6"], [[-math.inf, -0.91629, -math.inf, -1.3863, -math.inf]], [
        (_ALL_REMOVED, [[-math.inf] * 5]),
        (_CROSSING_REMOVED, [[-math.inf, -0.91629, -math.inf, -math.inf, -math.inf]]),
        (_NOT_PUT_BACK, [[-2.3026, -0.91629, -math.inf, -math.inf, -math.inf]]),
        (_GATHERED, [[-2.3026, -math.inf, -math.inf, -1.3863, -math.inf]]),
        (_VOCABULARY_ORDER, [[-2.3026, -0.91629, -2.9957, -1.3863, -math.inf]]),
        (_ZEROS, [[0.0, -0.91629, 0.0, -1.3863, 0.0]]),
        (_RETURNS_PROBABILITIES, [[0.0, 0.61538, 0.0, 0.38462, 0.0]]),
        (_EVERYTHING_KEPT, [[-2.3026, -0.91629, -2.9957, -1.3863, -1.6094]]),
    ], what="the logits of the probabilities [[0.1, 0.4, 0.05, 0.25, 0.2]] filtered with p = 0.6")
    expect_logits(outputs["0.7"], [[-math.inf, -0.91629, -math.inf, -1.3863, -1.6094]], [
        (_CROSSING_REMOVED, [[-math.inf, -0.91629, -math.inf, -1.3863, -math.inf]]),
    ], what="the logits of the probabilities [[0.1, 0.4, 0.05, 0.25, 0.2]] filtered with p = 0.7")


def _top_token_logits():
    """A row whose most likely token alone exceeds p = 0.5: [[0.05, 0.8, 0.15]], or drawn while graded."""
    def make(attempt):
        if not Checks.salt:
            return _top_p_logits([[0.05, 0.8, 0.15]])
        logits = seeded_randn(1, 3, seed=506 + 7919 * attempt)
        logits[0, seeded_randint(3, (1,), seed=507 + 7919 * attempt)] += 3.0
        return logits
    return clear_of_p(make, (0.5,))


def _public_top_p_top_token():
    try:
        return top_p_filter(_top_token_logits(), 0.5)
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as error:
        raise AssertionError(raised(error, "for one row of 3 logits")) from None


def _public_top_p_top_token_kept(output):
    expect_logits(output, [[-math.inf, -0.22314, -math.inf]], [(_TOP_DROPPED, [[-math.inf] * 3])],
                  what="the logits of the probabilities [[0.05, 0.8, 0.15]] filtered with p = 0.5")


_TOP_P_BATCH = [[0.1, 0.4, 0.05, 0.25, 0.2], [0.3, 0.05, 0.35, 0.1, 0.2], [0.15, 0.1, 0.2, 0.3, 0.25]]


def _public_top_p_batch():
    return batch_and_rows("top_p_filter", top_p_filter, _drawn_top_p_row(_TOP_P_BATCH, 508, (0.6,)), 0.6,
                          "a batch of 3 rows of logits")


def _public_top_p_batch_rows(data):
    expect_rows_filtered_alone(data, (3, 5), [(_EVERY_ROW, [[-math.inf] * 5] * 3)],
                               what="a batch of 3 rows filtered with p = 0.6")


def _public_top_p_3d():
    try:
        top_p_filter(_top_p_logits(_TOP_P_BATCH), 0.6)
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError):
        raise AssertionError("not checked: top_p_filter fails for a batch of rows (see the check above)") from None
    return batch_and_rows("top_p_filter", top_p_filter,
                          _drawn_top_p_row([[[0.5, 0.25, 0.15, 0.1]], [[0.1, 0.15, 0.3, 0.45]]], 509, (0.6,)), 0.6,
                          "logits of shape (2, 1, 4)")


def _public_top_p_3d_rows(data):
    expect_rows_filtered_alone(data, (2, 1, 4), what="logits of shape (2, 1, 4) filtered with p = 0.6")


checks.check("keeps the smallest set of most likely tokens whose probabilities reach p", 5, _public_top_p_row,
             _public_top_p_row_values)
checks.check("always keeps the most likely token", 3, _public_top_p_top_token, _public_top_p_top_token_kept)
# The checks of batches compare the kernel's batch with its own rows (to say which row differs); while graded, their
# points need the batch to be its rows filtered on their own, as the grader computes them on drawn logits
# (compare="compare_top_p_batch"), right or with a known mistake of one row (the checks of one row judge which).
checks.check("each row of a batch is filtered on its own", 3, _public_top_p_batch, _public_top_p_batch_rows,
             compare="compare_top_p_batch")
checks.check("logits of shape (B, T, V)", 1, _public_top_p_3d, _public_top_p_3d_rows,
             compare="compare_top_p_batch")
### BEGIN HIDDEN TESTS
def _hidden_top_p_logits():
    return clear_of_p(lambda attempt: seeded_randn(3, 20, seed=500 + 7919 * attempt, scale=1.5), (0.9, 0.3, 1.0))


def _hidden_peaked_logits():
    """(4, 10) logits whose most likely token has a probability above 0.5."""
    def make(attempt):
        logits = seeded_randn(4, 10, seed=501 + 7919 * attempt)
        logits[torch.arange(4), torch.tensor([3, 7, 0, 9])] += 4.0
        return logits
    return clear_of_p(make, (0.5,))


def _hidden_top_p_batch():
    """(4, 3, 10) logits; in two of the rows the most likely token alone is above p = 0.75 (on every draw, so that a
    filter that drops it loses this check whatever the draw)."""
    def make(attempt):
        logits = seeded_randn(4, 3, 10, seed=502 + 7919 * attempt)
        logits[0, 1, 4] += 7.0
        logits[2, 0, 8] += 7.0
        return logits
    return clear_of_p(make, (0.75,))


def _hidden_top_p_large():
    return clear_of_p(lambda attempt: seeded_randn(2, 500, seed=504 + 7919 * attempt, scale=2.0), (0.95,))


checks.check("other logits, p = 0.9, 0.3 and 1", 6,
             lambda: [top_p_filter(_hidden_top_p_logits(), p) for p in (0.9, 0.3, 1.0)], "verdict_top_p_values")
checks.check("keeps the most likely token when its probability alone exceeds p, other rows", 2,
             lambda: top_p_filter(_hidden_peaked_logits(), 0.5), "verdict_top_p_top_token")
checks.check("a (4, 3, 10) batch", 3,
             lambda: batch_and_rows("top_p_filter", top_p_filter, _hidden_top_p_batch(), 0.75, "logits of shape (4, 3, 10)"),
             "verdict_top_p_batch")
checks.check("500 logits per row, p = 0.95", 2, lambda: top_p_filter(_hidden_top_p_large(), 0.95), "verdict_top_p_large")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# ## The sampling loop (30 points)
#
# Now put it all together. `sample` generates `max_new_tokens` tokens after the prompts `input_ids` (shape (B, T)),
# one token at a time. At each step:
# 1. crop the context to its last `model.seq_len` tokens, and run the model on it;
# 2. take the logits of the **last** position: shape (B, V);
# 3. apply the temperature with your `apply_temperature`; then, when they are given (not `None`), your `top_k_filter`
#    with `top_k`, then your `top_p_filter` with `top_p`, in this order: top-p is computed on the probabilities that
#    the temperature and top-k leave;
# 4. turn the logits into probabilities (softmax), and draw one token per row:
#    `torch.multinomial(probabilities, num_samples=1, generator=generator)` draws, for each row of `probabilities`
#    (B, V), one token with those probabilities, and returns them with shape (B, 1);
# 5. append the drawn tokens to `input_ids`.
#
# `sample` must also:
# - work for a batch of prompts: each row is sampled as it would be alone;
# - put the model in eval mode (`model.eval()`), and compute no gradients (`@torch.no_grad()`);
# - draw with `generator`: a `torch.Generator` seeded the same way (`torch.Generator().manual_seed(0)`) then gives the
#   same tokens every time, whatever else used PyTorch's random numbers in between. With `generator=None`,
#   `torch.multinomial` uses PyTorch's global random numbers.
#
# It returns `input_ids` followed by the new tokens, shape (B, T + `max_new_tokens`).
#
# Please use your `apply_temperature`, `top_k_filter` and `top_p_filter`: the checks of `sample` replace them with
# stand-ins of their own (`StandIns`, in the helpers cell), so that a mistake in one of them costs points only in its
# own exercise.

# %% nbgrader={"grade": false, "grade_id": "sample", "locked": false, "schema_version": 3, "solution": true, "task": false}
@torch.no_grad()
def sample(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Samples max_new_tokens tokens after input_ids (B, T); returns input_ids followed by them, (B, T + max_new_tokens)."""
    ### BEGIN SOLUTION
    model.eval()                                              # no dropout while generating
    for _ in range(max_new_tokens):
        logits = model(input_ids[:, -model.seq_len:])[:, -1]  # (B, V): the last position, of the cropped context
        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        probabilities = logits.softmax(dim=-1)
        next_ids = torch.multinomial(probabilities, num_samples=1, generator=generator)  # (B, 1)
        input_ids = torch.cat([input_ids, next_ids], dim=1)   # (B, T + 1)
    return input_ids
    ### END SOLUTION


# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of sample.
def verdict_sample_peaked(output):
    model, prompts = StandInLM(40, vocab_size=12, seq_len=6), seeded_randint(12, (4, 5), seed=41)
    expect_tensor(output, (4, 13), "the output for 4 prompts of 5 tokens and max_new_tokens=8")
    what = "the tokens sampled with a model sure of each next token"
    assert torch.equal(output[:, :5].long().cpu(), prompts), "the output should start with the prompts"
    expected = _ref_peaked_sample(model, prompts, 8)
    for message, wrong in [(_LAST_POSITION, _ref_peaked_sample(model, prompts, 8, position=0)),
                           ("the context should be the last model.seq_len tokens, not the first ones",
                            _ref_peaked_sample(model, prompts, 8, crop="first"))]:
        assert not (_close(output, wrong) and not _close(output, expected)), f"wrong values in {what}: {message}"
    assert _close(output, expected), f"wrong tokens in {what}: {_PEAKED_HINT}"


def verdict_sample_eval_mode(data):
    assert not any(data["grad_enabled"]), _GRADIENTS
    expect_tensor(data["train"], (2, 7), "the output for 2 prompts of 3 tokens and max_new_tokens=4")
    assert torch.equal(data["train"], data["eval"]), _NOT_EVAL


def verdict_sample_generator(data):
    outputs = data["outputs"]
    for output in outputs[:2]:
        expect_tensor(output, (200, 17), "the output for 200 prompts of 2 tokens and max_new_tokens=15")
    assert torch.equal(outputs[0][:, 2:], outputs[1][:, 2:]), _GENERATOR_IGNORED
    assert not torch.equal(outputs[0], outputs[3]), _NOT_RANDOM


def verdict_sample_distribution(data):
    _expect_frequencies(data["counts"], seeded_randn(8, seed=44).softmax(dim=-1))


def verdict_sample_wiring(data):
    _expect_wiring(data["top_k"], {"apply_temperature": 1.3, "top_k_filter": 2, "top_p_filter": None}, _HIDDEN_REMOVES)
    _expect_wiring(data["top_p"], {"apply_temperature": 0.8, "top_k_filter": None, "top_p_filter": 0.5}, _HIDDEN_REMOVES)


def verdict_sample_long_prompt(output):
    model, prompts = StandInLM(45), seeded_randint(10, (2, 9), seed=46)
    expect_tensor(output, (2, 12), "the output for 2 prompts of 9 tokens (seq_len=4) and max_new_tokens=3")
    what = "the tokens sampled after prompts longer than model.seq_len"
    expected = _ref_peaked_sample(model, prompts, 3)
    for message, wrong in [("the context should be the last model.seq_len tokens, not the first ones",
                            _ref_peaked_sample(model, prompts, 3, crop="first")),
                           (_LAST_POSITION, _ref_peaked_sample(model, prompts, 3, position=0))]:
        assert not (_close(output, wrong) and not _close(output, expected)), f"wrong values in {what}: {message}"
    assert _close(output, expected), f"wrong tokens in {what}: {_PEAKED_HINT}"


# The comparisons of sample's data on drawn inputs with the grader's (see Checks.check). Sampling is random, and right
# samplers draw differently (torch.multinomial, Gumbel-max, ...): they check what every right sampler gives on the drawn
# model, its prompts, and tokens only where the model puts probability, drawn as often as the model's probabilities,
# computed here from the drawn model, say. Their reasons name no drawn number: grading twice says the same thing.
def _expect_no_gradients(grad_enabled, message):
    assert isinstance(grad_enabled, list) and grad_enabled, "not checked: the model did not run"
    assert all(flag is False for flag in grad_enabled), message


def _expect_drawn_tokens(output, reference, prompt_length, probabilities, what):
    """Tokens sampled on drawn inputs: the shape and prompts of the reference (the solution's output), and new tokens
    that follow `probabilities`, each frequency within 6 standard deviations (a right sampler practically never fails)."""
    expect_tensor(output, tuple(reference.shape), what)
    values = output.detach().double().cpu()
    assert torch.isfinite(values).all() and torch.equal(values, values.round()), f"{what} should hold token ids"
    tokens, probabilities = values.long(), probabilities.double().cpu().flatten()
    assert torch.equal(tokens[:, :prompt_length], reference[:, :prompt_length].long().cpu()), (
        f"{what} should start with the prompts")
    new = tokens[:, prompt_length:].flatten()
    assert ((new >= 0) & (new < len(probabilities))).all(), f"{what} holds tokens outside the vocabulary"
    assert (probabilities[new] > 0).all(), (
        f"{what} holds tokens that have no probability: draw only tokens that the (filtered) logits allow")
    frequencies = torch.bincount(new, minlength=len(probabilities)).double() / new.numel()
    assert (frequencies - probabilities).abs().max() < 3.0 / math.sqrt(new.numel()), (
        f"the tokens in {what} are not drawn with the model's probabilities: draw each one from the softmax of the last "
        "position's logits")


def _expect_runs(data, reference, prompt_length, what):
    """The outputs of each run of _runs: each one follows its own model's probabilities."""
    outputs = data["outputs"]
    assert isinstance(outputs, list) and len(outputs) == len(reference["outputs"]), f"{what}: another structure"
    for output, expected, probabilities in zip(outputs, reference["outputs"], reference["probabilities"], strict=True):
        _expect_drawn_tokens(output, expected, prompt_length, probabilities, what)
    return outputs


def compare_sample_same_seed(data, reference):
    outputs = _expect_runs(data, reference, 1, "the output for drawn logits")
    assert torch.equal(outputs[0][:, 1:], outputs[1][:, 1:]), _GENERATOR_IGNORED


def compare_sample_other_seed(data, reference):
    outputs = _expect_runs(data, reference, 1, "the output for drawn logits")
    assert not torch.equal(outputs[0], outputs[1]), _NOT_RANDOM


def compare_sample_generator(data, reference):
    outputs = _expect_runs(data, reference, 2, "the output for drawn logits and prompts")
    assert torch.equal(outputs[0][:, 2:], outputs[1][:, 2:]), _GENERATOR_IGNORED
    assert not torch.equal(outputs[0], outputs[3]), _NOT_RANDOM


def compare_sample_frequencies(data, reference):
    counts, probabilities = data["counts"], reference["probabilities"].double().cpu()
    expect_tensor(counts, tuple(reference["counts"].shape), "the counts of the tokens drawn")
    counts = counts.detach().double().cpu()
    total = reference["counts"].sum().item()
    assert torch.isfinite(counts).all() and (counts >= 0).all() and counts.sum().item() == total, (
        f"the counts of the tokens drawn should add up to the {total} prompts")
    assert ((counts / total - probabilities).abs().max() < 3.0 / math.sqrt(total)).item(), (
        "the tokens drawn for drawn logits are not drawn with the model's probabilities: draw them from the softmax of the "
        "last position's logits")


def compare_sample_wiring(data, reference):
    """The tokens sample drew with stand-ins that remove tokens: never a removed one, the others as often as the model's
    probabilities without the removed tokens say."""
    pairs = [(data[key], reference[key]) for key in reference] if "top_k" in reference else [(data, reference)]
    for got, expected in pairs:
        assert got["error"] is None, "sample fails on drawn logits (see the message of the notebook's inputs)"
        logits = expected["logits"].double().cpu().clone()
        logits[expected["removed"]] = float("-inf")
        _expect_drawn_tokens(got["output"], expected["output"], 1, logits.softmax(dim=-1),
                             "the output with the stand-ins of the filters, for drawn logits")


def compare_sample_no_gradients(data, reference):
    same_data(data["output"], reference["output"], what="the tokens sampled by a model sure of each next token")
    _expect_no_gradients(data["grad_enabled"], _GRADIENTS)


def compare_sample_eval(data, reference):
    for mode in ("train", "eval"):
        same_data(data[mode], reference[mode], what=f"the tokens sampled by a model sure of each next token ({mode} mode)")
    _expect_no_gradients(data["grad_enabled"], _GRADIENTS)


# %% nbgrader={"grade": true, "grade_id": "test_sample", "locked": true, "points": 30, "schema_version": 3, "solution": false, "task": false}
# @title Checks of sample: run this cell after your answer (the lines it prints say what was checked)
"""Checks sample with stand-in models and stand-ins for the filters: shapes, last position, batches, eval mode, no
gradients, cropping, the generator, the probabilities drawn, and the use of the temperature and the filters."""
checks = Checks("sample", points=30)

_SOFTMAX_MISSING = ("your code raised RuntimeError in torch.multinomial: it got negative numbers, -inf or NaN, not "
                    "probabilities: draw from the softmax of the logits over the vocabulary (the last dimension), "
                    "taken after the temperature and the filters")
_BATCH_NOT_CHECKED = "not checked: sample fails for a batch of prompts (see the check of batches above)"
_MODEL_NOT_RUN = "sample does not run the model once per new token: each new token is drawn from the model's logits"
_LAST_POSITION = "the next token should be drawn from the logits of the last position"
_PEAKED_HINT = ("the model gives each next token almost all the probability, so sampling should draw it every time: "
                "check where the probabilities come from (the softmax over the vocabulary of the last position's "
                "logits, for the context cropped to its last model.seq_len tokens)")
_NOT_EVAL = ("sample gives other tokens for a model left in training mode than for the same model in eval mode: dropout "
             "is still on while generating. Put the model in eval mode in sample")
_GRADIENTS = ("sample computes gradients, which generation doesn't need (and which cost memory): decorate it with "
              "@torch.no_grad()")
_GENERATOR_IGNORED = ("sample gives different tokens with two generators seeded the same: it ignores the generator it is "
                      "given. Draw the tokens with it, so that a seeded generator makes the samples reproducible")
_NOT_RANDOM = ("sample gives the same tokens with generators seeded differently: it should draw each token at random, "
               "with the generator it is given, not pick the most likely one")
_NOT_CROPPED = ("sample fails once the sequence is longer than model.seq_len: the model knows no longer context, so crop "
                "the context to its last model.seq_len tokens")


def _sampled(model, prompt, max_new_tokens, seed=0, stand_ins=None, batch_check=False, **options):
    """sample's output, with a generator seeded with `seed`, and stand-ins for your apply_temperature, top_k_filter and
    top_p_filter (see StandIns in the helpers cell). When sample fails for a batch of prompts but not for one, only the
    check of batches (`batch_check`) says why."""
    stand_ins, runs = stand_ins or StandIns(), []
    generator = torch.Generator().manual_seed(drawn(seed))
    hook = model.register_forward_hook(lambda module, inputs, output: runs.append(1))
    try:
        with replaced(**stand_ins.functions()):  # see `replaced`
            output = sample(model, prompt.clone(), max_new_tokens, generator=generator, **options)
        assert len(runs) >= max_new_tokens, _MODEL_NOT_RUN
        return output
    except AssertionError:
        raise
    except Exception as error:
        if isinstance(error, RuntimeError) and ("probability tensor" in str(error) or "invalid multinomial" in str(error)):
            raise AssertionError(_SOFTMAX_MISSING) from None
        if batch_check or len(prompt) == 1:
            raise
        try:
            with replaced(**StandIns().functions()):
                sample(model, prompt[:1].clone(), max_new_tokens, generator=torch.Generator().manual_seed(drawn(seed)),
                       **options)
        except Exception:
            raise error from None
        raise AssertionError(_BATCH_NOT_CHECKED) from None
    finally:
        hook.remove()


def _public_sample_output():
    return _sampled(StandInLM(20), relabeled_ids([[3, 7]], 10), 2)


def _public_sample_starts_with_prompt(output):
    expect_tensor(output, (1, 4), "the output for a prompt of 2 tokens and max_new_tokens=2")
    assert torch.equal(output[:, :2].long().cpu(), torch.tensor([[3, 7]])), "the output should start with the prompt"


def _public_sample_peaked():
    return _sampled(StandInLM(32), relabeled_ids([[4, 1]], 10), 3)


def _public_sample_peaked_tokens(output):
    what = "the prompt [[4, 1]] and the 3 tokens sampled after it by a model sure of each next token"
    expect_tensor(output, (1, 5), what)
    tokens = output.long().cpu()
    assert not torch.equal(tokens, torch.tensor([[4, 1, 6, 6, 6]])), f"wrong tokens in {what}: {_LAST_POSITION}"
    assert torch.equal(tokens, torch.tensor([[4, 1, 3, 9, 6]])), f"wrong tokens in {what}: {_PEAKED_HINT}"


def _public_sample_batch():
    model, prompts = StandInLM(22), relabeled_ids([[1, 2], [7, 3], [5, 5]], 10)
    alone = [_sampled(model, prompts[i:i + 1], 2) for i in range(3)]
    try:
        batch = _sampled(model, prompts, 2, batch_check=True)
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as error:
        raise AssertionError(raised(error, "for a batch of 3 prompts", "draw one token per row, shape (B, 1), and "
                                    "append each one to its own row")) from None
    return {"batch": batch, "alone": alone}


def _public_sample_batch_like_alone(data):
    expect_tensor(data["batch"], (3, 4), "the output for a batch of 3 prompts")
    for i, alone in enumerate(data["alone"]):
        assert torch.equal(data["batch"][i:i + 1], alone), (
            f"prompt {i} of a batch of 3 prompts gets other tokens than when it is sampled alone (with a model sure "
            "of each next token): each prompt of a batch should be sampled as it would be alone")


def _public_sample_train_and_eval():
    outputs = {}
    for mode in ("train", "eval"):
        model = StandInLM(23, dropout=0.5).train(mode == "train")
        torch.manual_seed(drawn(0))
        outputs[mode] = _sampled(model, relabeled_ids([[2, 6]], 10), 2)
    return outputs


def _public_sample_same_as_eval(outputs):
    expect_tensor(outputs["train"], (1, 4), "the output for a prompt of 2 tokens and max_new_tokens=2")
    assert torch.equal(outputs["train"], outputs["eval"]), _NOT_EVAL


def _public_sample_gradients():
    model, grad_enabled = StandInLM(24), []
    hook = model.register_forward_hook(lambda module, inputs, output: grad_enabled.append(torch.is_grad_enabled()))
    try:
        with torch.enable_grad():
            output = _sampled(model, relabeled_ids([[3, 3]], 10), 2)
    finally:
        hook.remove()
    return {"grad_enabled": grad_enabled, "output": output}


def _public_sample_no_gradients(data):
    assert not any(data["grad_enabled"]), _GRADIENTS


def _public_sample_long():
    model = StandInLM(25)  # seq_len=4
    try:
        output = _sampled(model, relabeled_ids([[1, 8, 2, 9]], 10), 3)
    except IndexError:
        raise AssertionError(_NOT_CROPPED) from None
    expect_tensor(output, (1, 7), "the output for a prompt of 4 tokens and max_new_tokens=3")
    # the token sampled from the last 4 tokens alone, one step at a time
    return {"output": output, "alone": [_sampled(model, output[:, k:k + 4], 1) for k in range(3)]}


def _public_sample_cropped(data):
    for k, alone in enumerate(data["alone"]):
        assert torch.equal(data["output"][:, k + 4], alone[:, -1]), (
            f"token {k + 5} should be the one sampled from the 4 tokens before it (the model's seq_len): the context "
            "should be the last model.seq_len tokens")
    if data["output"].tolist() == [[1, 8, 2, 9, 9, 5, 4]]:
        return  # what the first position's logits give: the check of the last position judges it, the context is right
    expect_tokens(data["output"], [[1, 8, 2, 9, 9, 1, 0]], what="the tokens sampled past model.seq_len (the context "
                  "should be the last model.seq_len tokens)")


def _flat_model():
    """A stand-in model whose 10 tokens are all fairly likely."""
    return UnigramLM(own_or_drawn([0.3, -0.2, 0.1, 0.0, 0.5, -0.4, 0.2, -0.1, 0.4, -0.3], seed=207))


def _runs(runs, max_new_tokens):
    """sample's outputs for each (model, prompts, global seed, generator seed) of `runs`, and each model's probabilities
    (the grader checks that the tokens follow them)."""
    outputs = []
    for model, prompts, global_seed, seed in runs:  # PyTorch's global random numbers, and the generator's seed
        torch.manual_seed(drawn(global_seed))
        outputs.append(_sampled(model, prompts, max_new_tokens, seed=seed))
    return {"outputs": outputs, "probabilities": [model.logits.softmax(dim=-1) for model, *_ in runs]}


def _other_model(model):
    """The model with its least likely token made the most likely: tokens drawn from one don't follow the other."""
    logits = model.logits.clone()
    logits[logits.argmin()] = logits.max() + 3.0
    return UnigramLM(logits)


def _public_sample_same_seed():
    # The generators are seeded the same, PyTorch's global random numbers differ. The model's logits don't depend on
    # the prompt, so other prompts get the same new tokens; another model gets tokens that follow its own probabilities.
    model, prompts = _flat_model(), one_token_prompts(500, 10, seed=215)
    return _runs([(model, prompts, 1, 5), (model, seeded_randint(10, (500, 1), seed=213), 2, 5),
                  (_other_model(model), prompts, 3, 5)], 20)


def _public_sample_reproducible(data):
    outputs = data["outputs"]
    expect_tensor(outputs[0], (500, 21), "the output for 500 prompts of 1 token and max_new_tokens=20")
    expect_tensor(outputs[1], (500, 21), "the output for 500 other prompts of 1 token and max_new_tokens=20")
    assert torch.equal(outputs[0][:, 1:], outputs[1][:, 1:]), _GENERATOR_IGNORED


def _public_sample_other_seed():
    model, prompts = _flat_model(), one_token_prompts(500, 10, seed=216)
    return _runs([(model, prompts, 3, 5), (model, prompts, 4, 6)], 20)


def _public_sample_random(data):
    outputs = data["outputs"]
    expect_tensor(outputs[0], (500, 21), "the output for 500 prompts of 1 token and max_new_tokens=20")
    assert not torch.equal(outputs[0], outputs[1]), _NOT_RANDOM


def _token_counts(model, prompts, seed):
    """How many times each token of the model's vocabulary was drawn, one token after each of the prompts."""
    try:
        output = _sampled(model, prompts, 1, seed=seed)
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as error:
        raise AssertionError(f"not checked: sample fails for a batch of {len(prompts)} prompts ({type(error).__name__}: "
                             f"{error}); see the checks above") from None
    expect_tensor(output, (len(prompts), 2), f"the output for {len(prompts)} prompts of 1 token and max_new_tokens=1")
    return {"counts": torch.bincount(output[:, 1].long().cpu(), minlength=model.logits.shape[-1]),
            "probabilities": model.logits.softmax(dim=-1)}


def _expect_frequencies(counts, probabilities, tolerance=0.03):
    """Fails unless the tokens were drawn with these probabilities (with 10000 draws, the tolerance is at least 6
    standard deviations: a correct sample practically never fails it)."""
    expect_tensor(counts, probabilities.shape, "the counts of the tokens drawn")
    total = counts.sum().item()
    if (counts == total).any():
        raise AssertionError(f"not checked: all {total} prompts got the same token, while sample should draw each one at "
                             "random (see the checks above)")
    frequencies = counts.float() / total
    if (frequencies - 1 / len(counts)).abs().max() < tolerance < (probabilities - 1 / len(counts)).abs().max():
        raise AssertionError("the tokens are drawn as if they were all equally likely: take the softmax over the "
                             "vocabulary (the last dimension) of the logits")
    shown = ", ".join(f"{f:.2f}" for f in frequencies.tolist())
    expected = ", ".join(f"{p:.2f}" for p in probabilities.tolist())
    assert (frequencies - probabilities).abs().max() < tolerance, (
        f"the tokens drawn after {total} prompts have the frequencies [{shown}], far from the model's probabilities "
        f"[{expected}]: draw them from the softmax of the last position's logits")


def _public_sample_distribution():
    return _token_counts(UnigramLM(own_or_drawn([1.0, 0.0, -1.0, 2.0, 0.5], seed=208, scale=1.5)),
                         one_token_prompts(10000, 5, seed=217), 7)


def _public_sample_follows_the_model(data):
    _expect_frequencies(data["counts"], torch.tensor([0.20712, 0.0762, 0.02803, 0.56302, 0.12563]))


_PARAMETERS = {"apply_temperature": "temperature", "top_k_filter": "top_k", "top_p_filter": "top_p"}


def _is_probabilities(logits):
    return bool((logits >= 0).all() and torch.allclose(logits.sum(dim=-1), torch.ones(()), atol=1e-3))


def _wiring_inputs(logits, removes, seed):
    """The model's logits and the token each stand-in removes: as given, on the notebook's own inputs; while graded,
    drawn logits, and each stand-in removes the token of the same rank (the most likely tokens stay the removed ones).
    The drawn logits are close to each other: no token left takes almost all the probability."""
    if not Checks.salt:
        return logits, removes
    ranks = sorted(range(len(logits)), key=lambda token: -logits[token])
    drawn_logits = seeded_randn(len(logits), seed=seed, scale=0.5)
    order = drawn_logits.argsort(descending=True).tolist()
    return drawn_logits.tolist(), {name: order[ranks.index(t)] for name, t in removes.items()}


def _wired(logits, removes, prompts=1000, seed=209, even_with_none=False, **options):
    """What sample did with the model UnigramLM(logits) and stand-ins that remove tokens (`removes`): its output (or why
    it failed), the calls of each stand-in, the model's logits and the tokens that a right sample never draws."""
    logits, removes = _wiring_inputs(logits, removes, seed)
    stand_ins = StandIns(removes, even_with_none)
    removed = sorted({token for name, token in removes.items() if options.get(_PARAMETERS[name]) is not None})
    output, error = None, None
    try:
        output = _sampled(UnigramLM(logits), one_token_prompts(prompts, len(logits), seed=seed + 1), 2, seed=8,
                          stand_ins=stand_ins, **options)
    except AssertionError as failure:
        error = str(failure)
    except NotImplementedError:
        raise
    except Exception as failure:
        error = raised(failure, "with " + ", ".join(f"{name}={value}" for name, value in options.items()))
    return {"output": output, "error": error, "calls": stand_ins.calls, "prompts": prompts,
            "logits": torch.tensor(logits), "removed": removed}


def _expect_wiring(data, given, removes):
    """Fails unless sample called each stand-in with the value it was given (none when None), on logits, and drew from
    what they returned, top_p_filter last. `given`: the value of each function's parameter; `removes`: the token each
    stand-in removes."""
    for name, value in given.items():
        calls, parameter = data["calls"][name], _PARAMETERS[name]
        if value is None:
            assert not calls, (f"sample calls {name} although {parameter} is None: call it only when {parameter} is "
                               f"given (None means no {parameter.replace('_', '-')} filtering)")
            continue
        assert calls, f"sample does not call {name}, although {parameter}={value} is given: use your {name}"
        for call in calls:
            got = call["value"]
            assert isinstance(got, (int, float)) and abs(got - value) < 1e-6, (
                f"sample calls {name} with {got!r}, not with {parameter}={value}")
            assert not _is_probabilities(call["logits"]), (
                f"{name} got probabilities (a softmax), not logits: apply it to the logits, before the softmax")
    if data["error"] is not None:
        raise AssertionError(data["error"])
    output, rows = data["output"], data["prompts"]
    expect_tensor(output, (rows, 3), f"the output for {rows} prompts of 1 token and max_new_tokens=2")
    drawn = set(output[:, 1:].flatten().tolist())
    for name, value in given.items():
        if value is not None:
            assert removes[name] not in drawn, (
                f"sample does not use the logits that {name} returns: draw the next token from what it returns")
    if given.get("top_p_filter") is not None:
        before = [name for name in ("apply_temperature", "top_k_filter") if given.get(name) is not None]
        for call in data["calls"]["top_p_filter"]:
            assert all((call["logits"][..., removes[name]] == float("-inf")).all() for name in before), (
                "top_p_filter should come last, after apply_temperature and top_k_filter: the nucleus depends on the "
                "probabilities that the temperature and top-k leave")


_REMOVES = {"apply_temperature": 5, "top_k_filter": 4, "top_p_filter": 3}


def _public_sample_wiring():
    # tokens 3, 4 and 5 are the most likely: each stand-in removes one of them
    return _wired([-1.0, -0.5, 0.0, 1.5, 1.5, 1.5], _REMOVES, temperature=0.7, top_k=3, top_p=0.9)


def _public_sample_no_filters():
    # the stand-ins remove a token even when called with None: a right sample, which doesn't call them, draws it
    return _wired([-1.0, -0.5, 0.0, 1.5, 1.5, 1.5], {"top_k_filter": 4, "top_p_filter": 3}, seed=210,
                  even_with_none=True, temperature=1.0, top_k=None, top_p=None)


checks.check("returns the prompt followed by max_new_tokens tokens", 1, _public_sample_output,
             _public_sample_starts_with_prompt)
checks.check("a model sure of each next token: sample draws it, after the last position", 2, _public_sample_peaked,
             _public_sample_peaked_tokens)
checks.check("each prompt of a batch is sampled as it would be alone", 2, _public_sample_batch,
             _public_sample_batch_like_alone)
checks.check("a model in training mode samples what it does in eval mode", 1, _public_sample_train_and_eval,
             _public_sample_same_as_eval)
checks.check("computes no gradients", 1, _public_sample_gradients, _public_sample_no_gradients,
             compare="compare_sample_no_gradients")
checks.check("crops the context to model.seq_len", 2, _public_sample_long, _public_sample_cropped)
checks.check("generators seeded the same give the same tokens", 2, _public_sample_same_seed, _public_sample_reproducible,
             compare="compare_sample_same_seed")
checks.check("generators seeded differently give other tokens", 1, _public_sample_other_seed, _public_sample_random,
             compare="compare_sample_other_seed")
checks.check("the tokens follow the model's probabilities", 2, _public_sample_distribution,
             _public_sample_follows_the_model, compare="compare_sample_frequencies")
checks.check("uses apply_temperature, top_k_filter and top_p_filter, before the softmax", 3, _public_sample_wiring,
             lambda data: _expect_wiring(data, {"apply_temperature": 0.7, "top_k_filter": 3, "top_p_filter": 0.9}, _REMOVES),
             compare="compare_sample_wiring")
checks.check("no top-k or top-p filtering when top_k and top_p are None", 1, _public_sample_no_filters,
             lambda data: _expect_wiring(data, {"top_k_filter": None, "top_p_filter": None}, {}),
             compare="compare_sample_wiring")
### BEGIN HIDDEN TESTS
_HIDDEN_REMOVES = {"apply_temperature": 0, "top_k_filter": 1, "top_p_filter": 2}


def _probe_sample_peaked():
    try:
        return _sampled(StandInLM(40, vocab_size=12, seq_len=6), own_ids(12, (4, 5), seed=41), 8)
    except IndexError:
        raise AssertionError(_NOT_CROPPED) from None


def _probe_sample_eval_mode():
    data = {"grad_enabled": []}
    for mode in ("train", "eval"):
        model = StandInLM(42, vocab_size=12, seq_len=6, dropout=0.5).train(mode == "train")
        hook = model.register_forward_hook(lambda module, inputs, output: data["grad_enabled"].append(torch.is_grad_enabled()))
        try:
            with torch.enable_grad():
                torch.manual_seed(drawn(47))
                data[mode] = _sampled(model, own_ids(12, (2, 3), seed=43), 4)
        finally:
            hook.remove()
    return data


def _probe_sample_generator():
    model, prompts = UnigramLM(seeded_randn(8, seed=48)), seeded_randint(8, (200, 2), seed=49)
    return _runs([(model, prompts, 7, 11), (model, seeded_randint(8, (200, 2), seed=214), 8, 11),
                  (_other_model(model), prompts, 9, 11), (model, prompts, 10, 12)], 15)


def _probe_sample_wiring():
    logits = [1.5, 1.5, 1.5, -0.5, 0.0, -1.0, 0.5]  # tokens 0, 1 and 2 are the most likely
    return {"top_k": _wired(logits, _HIDDEN_REMOVES, seed=211, temperature=1.3, top_k=2, top_p=None),
            "top_p": _wired(logits, _HIDDEN_REMOVES, seed=212, temperature=0.8, top_k=None, top_p=0.5)}


def _probe_sample_long_prompt():
    try:
        return _sampled(StandInLM(45), own_ids(10, (2, 9), seed=46), 3)
    except IndexError:
        raise AssertionError(_NOT_CROPPED) from None


checks.check("a model sure of each next token, other sizes", 3, _probe_sample_peaked, "verdict_sample_peaked")
checks.check("eval mode and no gradients, other model", 2, _probe_sample_eval_mode, "verdict_sample_eval_mode",
             compare="compare_sample_eval")
checks.check("the generator, other seeds and prompts", 2, _probe_sample_generator, "verdict_sample_generator",
             compare="compare_sample_generator")
checks.check("the tokens follow the model's probabilities, other model", 2,
             lambda: _token_counts(UnigramLM(seeded_randn(8, seed=44)), one_token_prompts(10000, 8, seed=218), 13),
             "verdict_sample_distribution", compare="compare_sample_frequencies")
checks.check("top_k alone, top_p alone", 2, _probe_sample_wiring, "verdict_sample_wiring", compare="compare_sample_wiring")
checks.check("prompts longer than model.seq_len", 1, _probe_sample_long_prompt, "verdict_sample_long_prompt")
### END HIDDEN TESTS
checks.score()

# %% [markdown]
# ### Decoding strategies at work
#
# With `top_k=1`, sampling is greedy decoding: one token only is left to draw. See how it repeats itself:

# %% nbgrader={"grade": false, "grade_id": "demo_greedy", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
prompt_ids = encode("Alice ")
print(repr(to_text(sample(model, prompt_ids, 150, top_k=1)[0])))

# %% [markdown]
# Now sample at three temperatures, with the same seed. At a low temperature the text stays close to the most
# likely characters (and may loop, as greedy does); at temperature 1 it follows the model's own probabilities; at a
# high temperature, unlikely characters come in and the words fall apart.

# %% nbgrader={"grade": false, "grade_id": "demo_temperatures", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
for temperature in (0.5, 1.0, 1.5):
    generator = torch.Generator().manual_seed(0)
    text = to_text(sample(model, prompt_ids, 150, temperature=temperature, generator=generator)[0])
    print(f"temperature {temperature}: {text!r}\n")

# %% [markdown]
# Top-k and top-p cut the long tail: at the same high temperature, the text keeps closer to words (compare with
# temperature 1.5 above). Try other values, and other prompts, in a code cell of your own below this one
# (+ Code)!

# %% nbgrader={"grade": false, "grade_id": "demo_top_k_top_p", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
for options in ({"temperature": 1.5, "top_k": 5}, {"temperature": 1.5, "top_p": 0.8}):
    generator = torch.Generator().manual_seed(0)
    text = to_text(sample(model, prompt_ids, 150, generator=generator, **options)[0])
    print(f"{options}: {text!r}\n")


# %% [markdown]
# ## Beam search (15 points)
#
# Sampling explores at random. Beam search looks for the most likely text instead: the sequence of new tokens with
# the highest total log-probability $\sum_t \log p(x_t \mid x_{<t})$ (a sum of log-probabilities rather than a
# product of probabilities, which would round to 0 on long sequences). There are $V^n$ sequences of $n$ tokens, far
# too many to try them all, so beam search keeps only the `num_beams` best partial sequences, the *beams*:
# 1. start with one beam, the prompt, with a score of 0;
# 2. at each step, extend every beam with every token of the vocabulary: a candidate's score is its beam's score
#    plus the log-probability of the new token (the `log_softmax` of the last position's logits);
# 3. keep the `num_beams` candidates with the best scores as the new beams (all of them, when there are fewer);
# 4. after `max_new_tokens` steps, return the beam with the best score.
#
# With one beam, this is greedy decoding. With more, beam search can find text whose first token is not the most
# likely one, but whose continuation is much more likely, which greedy decoding misses. Beam search suits tasks with
# one good answer, such as translation or summarization; for open-ended text it tends to give bland, repetitive text
# (Holtzman et al., 2020), which is one reason why chat models sample.
#
# Complete `beam_search` for a single prompt, `input_ids` of shape (1, T): it returns the best sequence, the prompt
# followed by `max_new_tokens` tokens, shape (1, T + `max_new_tokens`). As in `sample`, crop the context to
# `model.seq_len`, and run the model in eval mode, without gradients. All candidates have the same length, so their
# scores compare as they are.
#
# A tip: the beams fit in one batch of shape (number of beams, T), and the scores of all candidates in a tensor of
# shape (number of beams, V). Once flattened, `torch.topk` finds the best candidates, and each flat index $i$ says
# which beam ($i$ // V) and which token ($i$ % V) it extends.

# %% nbgrader={"grade": false, "grade_id": "beam_search", "locked": false, "schema_version": 3, "solution": true, "task": false}
@torch.no_grad()
def beam_search(model, input_ids, num_beams, max_new_tokens):
    """The most likely continuation of input_ids (1, T) that beam search finds: shape (1, T + max_new_tokens)."""
    ### BEGIN SOLUTION
    model.eval()
    beams, scores = input_ids, torch.zeros(1, device=input_ids.device)  # one beam to start with: the prompt
    for _ in range(max_new_tokens):
        log_probabilities = model(beams[:, -model.seq_len:])[:, -1].log_softmax(dim=-1)  # (beams, V)
        candidates = (scores[:, None] + log_probabilities).flatten()                      # (beams * V)
        scores, best = candidates.topk(min(num_beams, candidates.numel()))                  # the best first
        V = log_probabilities.shape[-1]
        beams = torch.cat([beams[best // V], (best % V)[:, None]], dim=1)                  # (beams, T + 1)
    return beams[:1]
    ### END SOLUTION


# %% tags=["grader-only"]
# Grader-only: beam search done right and done wrong, and the best sequence found by trying them all.
import itertools


def _ref_beam_search(model, input_ids, num_beams, max_new_tokens, mistake=None):
    """Beam search; `mistake` reproduces a known wrong variant ("same start", the beams starting as copies of the
    prompt, finds what "greedy" does)."""
    model.eval()
    with torch.no_grad():
        if mistake == "same start":
            beams, scores = input_ids.repeat(num_beams, 1), torch.zeros(num_beams)
        else:
            beams, scores = input_ids, torch.zeros(1)
        for _ in range(max_new_tokens):
            log_probabilities = model(beams[:, -model.seq_len:])[:, -1].log_softmax(dim=-1)
            V = log_probabilities.shape[-1]
            if mistake == "last only":
                candidates = log_probabilities.flatten()
            else:
                candidates = (scores[:, None] + log_probabilities).flatten()
            scores, best = candidates.topk(min(1 if mistake == "greedy" else num_beams, candidates.numel()))
            beams = torch.cat([beams[best // V], (best % V)[:, None]], dim=1)
    return beams[-1:] if mistake == "worst" else beams[:1]


def _best_sequence(model, input_ids, max_new_tokens):
    """The continuation of highest total log-probability, found by trying every sequence."""
    model.eval()
    best, best_score = None, float("-inf")
    with torch.no_grad():
        V = model(input_ids[:, -model.seq_len:]).shape[-1]
        for tokens in itertools.product(range(V), repeat=max_new_tokens):
            ids, score = input_ids, 0.0
            for token in tokens:
                score += model(ids[:, -model.seq_len:])[0, -1].log_softmax(dim=-1)[token].item()
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            if score > best_score:
                best, best_score = ids, score
    return best


def _beam_variants(model, prompt, num_beams, max_new_tokens):
    return [(message, _ref_beam_search(model, prompt, num_beams, max_new_tokens, mistake))
            for mistake, message in [("greedy", _GREEDY), ("last only", _LAST_ONLY), ("worst", _WORST)]]


def verdict_beam_exhaustive(output):
    model, prompt = TableLM(seeded_randn(5, 5, seed=50, scale=2.0)), torch.tensor([[1]])
    expect_tensor(output, (1, 4), "the output for a prompt of 1 token and max_new_tokens=3")
    _expect_values(output, _best_sequence(model, prompt, 3), _beam_variants(model, prompt, 25, 3),
                   what="the sequence found with 25 beams, enough to keep every sequence of 2 of the 5 tokens")


def verdict_beam_other_model(output):
    model, prompt = StandInLM(51, vocab_size=10, seq_len=6, peaked=False), seeded_randint(10, (1, 3), seed=52)
    expect_tensor(output, (1, 7), "the output for a prompt of 3 tokens and max_new_tokens=4")
    _expect_values(output, _ref_beam_search(model, prompt, 3, 4), _beam_variants(model, prompt, 3, 4),
                   what="the sequence found with 3 beams")


def compare_beam_eval(data, reference):
    """The sequences found on drawn inputs, in training mode and in eval mode, against the solution's (which the
    number of times the model runs may differ from: beams in one batch, or one at a time)."""
    for mode in ("train", "eval"):
        same_data(data[mode], reference[mode], what=f"the sequence found with 2 beams ({mode} mode)")
    _expect_no_gradients(data["grad_enabled"], "beam_search computes gradients, which decoding doesn't need: decorate it "
                                               "with @torch.no_grad()")


def verdict_beam_greedy(output):
    model, prompt = StandInLM(53, vocab_size=12, seq_len=6, peaked=False), seeded_randint(12, (1, 2), seed=54)
    expect_tensor(output, (1, 7), "the output for a prompt of 2 tokens and max_new_tokens=5")
    _expect_values(output, _ref_beam_search(model, prompt, 1, 5), what="the sequence found with 1 beam (greedy)")


# %% nbgrader={"grade": true, "grade_id": "test_beam_search", "locked": true, "points": 15, "schema_version": 3, "solution": false, "task": false}
# @title Checks of beam_search: run this cell after your answer (the lines it prints say what was checked)
"""Checks beam_search with stand-in models: shapes, one beam, a sequence greedy decoding misses, more beams than
candidates, the sum of log-probabilities, cropping, eval mode (hidden: every sequence tried, other models)."""
checks = Checks("beam_search", points=15)

_GREEDY = ("this is the sequence greedy decoding finds: keep the num_beams best sequences at each step, not only the best "
           "one, and make them different sequences (beams that start as copies of the prompt pick the same tokens)")
_LAST_ONLY = ("the beams are ranked by the log-probability of their last token only: a sequence's score is the sum of "
              "the log-probabilities of all its new tokens")
_WORST = "this is the worst of the final beams: return the one with the best score"
_BEAM_NOT_CROPPED = ("beam_search fails once the sequence is longer than model.seq_len: crop the context to its last "
                     "model.seq_len tokens")


def _public_beam_output():
    return beam_search(StandInLM(30, peaked=False), relabeled_ids([[2, 5]], 10), 3, 2)


def _public_beam_starts_with_prompt(output):
    expect_tensor(output, (1, 4), "the output for a prompt of 2 tokens and max_new_tokens=2")
    assert torch.equal(output[:, :2].long().cpu(), torch.tensor([[2, 5]])), "the output should start with the prompt"


def _public_beam_one():
    return beam_search(StandInLM(31, peaked=False), relabeled_ids([[1]], 10), 1, 3)


def _public_beam_one_is_greedy(output):
    expect_tokens(output, [[1, 9, 9, 3]], what="the sequence found with 1 beam (greedy decoding) after the prompt [[1]]")


# A model of 4 tokens whose most likely sequence after token 0 does not start with the most likely token: greedy
# decoding finds 0 -> 1 -> 2 (0.5 × 0.26 = 0.13), beam search with 2 beams finds 0 -> 2 -> 0 (0.4 × 0.5 = 0.2).
_TRAP = [[0.05, 0.5, 0.4, 0.05], [0.25, 0.25, 0.26, 0.24], [0.5, 0.4, 0.05, 0.05], [0.25, 0.25, 0.25, 0.25]]


def _trap_model():
    """TableLM(log _TRAP), its tokens relabeled while graded."""
    return TableLM(torch.tensor(_TRAP).log())


def _public_beam_trap():
    return beam_search(_trap_model(), relabeled_ids([[0]], 4), 2, 2)


def _public_beam_trap_found(output):
    expect_tokens(output, [[0, 2, 0]], [(_GREEDY, [[0, 1, 2]]), (_WORST, [[0, 2, 1]])],
                   what="the sequence found with 2 beams after the prompt [[0]] (a model built so that greedy decoding "
                        "misses the most likely sequence)")


def _public_beam_many():
    try:
        return beam_search(_trap_model(), relabeled_ids([[0]], 4), 6, 2)
    except NotImplementedError:
        raise
    except (RuntimeError, IndexError) as error:
        raise AssertionError(raised(error, "with 6 beams and a vocabulary of 4 tokens", "at the first step there are only "
                                    "4 candidates: keep all of them when there are fewer than num_beams")) from None


def _public_beam_many_best(output):
    expect_tokens(output, [[0, 2, 0]], [(_GREEDY, [[0, 1, 2]]), (_LAST_ONLY, [[0, 0, 1]]), (_WORST, [[0, 1, 3]])],
                  what="the sequence found with 6 beams after the prompt "
                  "[[0]] (more beams than the 4 candidates of the first step)")


def _public_beam_table():
    return beam_search(TableLM(own_input(lambda: seeded_randn(6, 6, seed=36, scale=1.5))), relabeled_ids([[0]], 6), 3, 4)


def _public_beam_best_sum(output):
    expect_tokens(output, [[0, 3, 2, 3, 3]], [(_GREEDY, [[0, 3, 3, 3, 3]]), (_LAST_ONLY, [[0, 5, 5, 1, 3]]),
                                             (_WORST, [[0, 5, 1, 3, 3]])],
                   what="the sequence found with 3 beams after the prompt [[0]] (a model of 6 tokens whose next token "
                        "depends on the last one)")


def _public_beam_long():
    try:
        return beam_search(StandInLM(36, peaked=False), relabeled_ids([[1, 2, 3]], 10), 2, 3)  # seq_len=4
    except IndexError:
        raise AssertionError(_BEAM_NOT_CROPPED) from None


def _public_beam_cropped(output):
    expect_tensor(output, (1, 6), "the output for a prompt of 3 tokens and max_new_tokens=3")
    if output.tolist() in ([[1, 2, 3, 0, 5, 3]], [[1, 2, 3, 1, 5, 2]]):
        return  # what greedy decoding, or the worst beam, finds: the checks above judge it, the context is right
    expect_tokens(output, [[1, 2, 3, 1, 5, 3]], what="the sequence found with 2 beams past model.seq_len (the context "
                                                      "should be the last model.seq_len tokens)")


def _public_beam_eval():
    data = {"grad_enabled": []}
    for mode in ("train", "eval"):
        model = StandInLM(34, dropout=0.5, peaked=False).train(mode == "train")
        hook = model.register_forward_hook(lambda module, inputs, output: data["grad_enabled"].append(torch.is_grad_enabled()))
        try:
            with torch.enable_grad():
                torch.manual_seed(drawn(0))
                data[mode] = beam_search(model, relabeled_ids([[4, 2]], 10), 2, 2)
        finally:
            hook.remove()
    return data


def _public_beam_eval_no_gradients(data):
    assert data["grad_enabled"], "not checked: beam_search does not run the model"
    assert not any(data["grad_enabled"]), ("beam_search computes gradients, which decoding doesn't need: decorate it "
                                           "with @torch.no_grad()")
    expect_tensor(data["train"], (1, 4), "the output for a prompt of 2 tokens and max_new_tokens=2")
    assert torch.equal(data["train"], data["eval"]), (
        "beam_search finds another sequence for a model left in training mode than for the same model in eval mode: "
        "dropout is still on. Put the model in eval mode in beam_search")


checks.check("returns the prompt followed by max_new_tokens tokens", 1, _public_beam_output,
             _public_beam_starts_with_prompt)
checks.check("one beam is greedy decoding", 2, _public_beam_one, _public_beam_one_is_greedy)
checks.check("finds the likely sequence that greedy decoding misses", 2, _public_beam_trap, _public_beam_trap_found)
checks.check("more beams than candidates", 1, _public_beam_many, _public_beam_many_best)
checks.check("ranks the beams by the sum of their log-probabilities", 2, _public_beam_table, _public_beam_best_sum)
checks.check("crops the context to model.seq_len", 1, _public_beam_long, _public_beam_cropped)
checks.check("eval mode, no gradients", 1, _public_beam_eval, _public_beam_eval_no_gradients, compare="compare_beam_eval")
### BEGIN HIDDEN TESTS
checks.check("enough beams to keep every sequence: the most likely one", 2,
             lambda: beam_search(TableLM(own_input(lambda: seeded_randn(5, 5, seed=50, scale=2.0))), relabeled_ids([[1]], 5), 25,
                                 3),
             "verdict_beam_exhaustive")
checks.check("3 beams, another model", 2,
             lambda: beam_search(StandInLM(51, vocab_size=10, seq_len=6, peaked=False), own_ids(10, (1, 3), seed=52), 3, 4),
             "verdict_beam_other_model")
checks.check("one beam, another model", 1,
             lambda: beam_search(StandInLM(53, vocab_size=12, seq_len=6, peaked=False), own_ids(12, (1, 2), seed=54), 1, 5),
             "verdict_beam_greedy")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# Compare the text of greedy decoding and of beam search, with the total log-probability of their new characters:
# beam search usually finds a more likely text. Is it a better one?

# %% nbgrader={"grade": false, "grade_id": "demo_beam_search", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
def log_probability(model, ids, prompt_length):
    """The sum of the log-probabilities of the tokens of ids (1, T) after its first prompt_length tokens."""
    total = 0.0
    with torch.no_grad():
        for t in range(prompt_length, ids.shape[1]):
            context = ids[:, max(0, t - model.seq_len):t]
            total += model(context)[0, -1].log_softmax(dim=-1)[ids[0, t]].item()
    return total


prompt_ids = encode("Alice ")
for name, ids in [("greedy", sample(model, prompt_ids, 40, top_k=1)), ("5 beams", beam_search(model, prompt_ids, 5, 40))]:
    print(f"{name}: {to_text(ids[0])!r} (log-probability {log_probability(model, ids, prompt_ids.shape[1]):.2f})")

# %% [markdown]
# # Check my work, and hand in
#
# The cell below runs the public checks of every exercise again, on your code as it is now, and sums them up: one line per exercise. Run it once you are done, after running the whole notebook (Runtime > Run all: it stops at the first cell that raises an error, such as an exercise you have not finished yet; fix that cell, or run the cells after it one by one). It gives no points, and it ends with how to hand in your notebook.

# %% nbgrader={"grade": false, "grade_id": "check_my_work", "locked": true, "schema_version": 3, "solution": false, "task": false}
check_my_work(["apply_temperature", "top_k_filter", "top_p_filter", "sample", "beam_search"], grading=GRADING)
if not GRADING:
    print()
    print("To hand in: in Colab, File > Download > Download .ipynb (in Jupyter: File > Download). Hand in the file "
          "as it is downloaded, without renaming it (\"Copy of pw3_decoding.ipynb\" is fine too), and without "
          "copying your answers into another notebook: the grader needs the cells of this one.")
