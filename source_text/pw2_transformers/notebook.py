# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Practical work 2: Transformers
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/YOUR-GITHUB-ORG/transformers-course/blob/main/release/pw2_transformers/pw2_transformers.ipynb)
#
# In this practical work you build a small GPT-style language model from scratch, in PyTorch:
# attention, multi-head attention and causal masking, then the modules of a transformer, a
# next-token loss that ignores padding, a training loop and greedy generation.
#
# **Grading.** The notebook is graded automatically, out of **100 points**:
#
# | exercise | points |
# |---|---|
# | `self_attention` | 10 |
# | `multi_head_attention` | 10 |
# | `causal_multi_head_attention` | 10 |
# | `CausalSelfAttention` | 10 |
# | `FeedForward` | 5 |
# | `Block` | 10 |
# | `Transformer` | 10 |
# | `lm_loss` | 15 |
# | `train_step` | 10 |
# | `decode` | 10 |
#
# Below each exercise, a locked cell checks your work. It prints one line per check (✓ or ✗ with
# the reason) and ends with the points earned. Those are the **public checks**: more checks of the
# same exercise run when your work is graded, so passing them all is a good sign, not a guarantee.
#
# Please keep the names and signatures of the functions and classes you are asked to write, don't
# delete or copy the locked cells, and hand in the notebook under its original name
# (`pw2_transformers.ipynb`). The **Check my work** cell at the end of the notebook runs the public
# checks of every exercise again, sums them up, and explains how to hand in.
#
# **Time.** Plan about four hours. A rough guide to the reading and coding time of each section (yours may differ
# a lot, and that is fine):
#
# | section | reading and coding |
# |---|---|
# | Installation and imports | 5 min |
# | Attention: `self_attention`, then why the scores are divided by √d_k | 30 min |
# | `multi_head_attention` | 30 min |
# | Causal mask | 20 min |
# | PyTorch module `CausalSelfAttention` | 25 min |
# | Transformer: `FeedForward`, `Block`, `Transformer` | 45 min |
# | Training: data, tokenization, `lm_loss`, `train_step`, the pipeline | 50 min |
# | Training run (the quick demo, `"overfit_one_batch"`) | about 1.5 min on 2 CPU cores (a smaller model; up to 5 min on a busy machine), about 3 min on a Colab T4 GPU (an estimate) |
# | Generation: `decode`, greedy decoding | 25 min |
# | Bonus: BERT's attentions | 15 min |
#
# The training section picks a model and a run that fit your machine (a smaller one on a CPU), and tells you how
# long it should take before it starts.

# %% [markdown]
# # Installation and imports
#
# In Colab, save a copy of the notebook to your Drive first (File > Save a copy in Drive), so that your work is kept.
#
# Then run it on a GPU:
# - Runtime > Change runtime type;
# - choose a GPU (for example T4), save;
# - Connect.
#
# ![Colab's runtime type settings, where a GPU is chosen as the hardware accelerator](https://paullerner.github.io/aivancity_nlp/_static/colab_gpu.png)

# %% nbgrader={"grade": false, "grade_id": "install", "locked": true, "schema_version": 3, "solution": false, "task": false}
import importlib.util
import os
import sys

# nbgrader sets NBGRADER_EXECUTION while it grades: the notebook then runs offline, on the CPU, on small data.
GRADING = "NBGRADER_EXECUTION" in os.environ
if GRADING:
    os.environ["HF_HUB_OFFLINE"] = "1"
OFFLINE = os.environ.get("HF_HUB_OFFLINE") == "1"
IN_COLAB = "google.colab" in sys.modules

# Colab already has PyTorch (never reinstall it): only install the libraries it lacks.
missing = [name for name in ["transformers", "tokenizers", "datasets", "tensorboard", "tqdm", "bertviz"]
           if importlib.util.find_spec(name) is None]
packages = " ".join(missing)
if missing and IN_COLAB:
    # %pip install -q {packages}
elif missing and not GRADING:
    print(f"Missing libraries: install them with `pip install {packages}`, then restart the kernel.")

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch
import torch.nn as nn
from torch.nn import functional as F

# %% nbgrader={"grade": false, "grade_id": "device", "locked": true, "schema_version": 3, "solution": false, "task": false}
if torch.cuda.is_available():
    device = "cuda"
    if not GRADING:
        print(f"Running on the GPU: {torch.cuda.get_device_name()}.")
else:
    device = "cpu"
    if not GRADING:
        print("No GPU found: running on the CPU instead. Everything works; the training section then trains a smaller "
              "model for fewer steps, so that it takes minutes rather than hours (it says which, and how long). "
              "For the larger model, in Colab choose Runtime > Change runtime type > GPU (T4, for example), "
              "then run the notebook again.")

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


# Diagnosis by behaviour (see `asked`): what the checks ask your code when its values are wrong.

def _answer_and_asked(data, key="output"):
    """A check's data with its further question: (the answer, what was asked), as a probe that asks sends them
    ({key: answer, "asked": ...}); other data is the answer alone, and nothing was asked."""
    if isinstance(data, dict) and key in data:
        return data[key], data.get("asked")
    return data, None


def attention_weights_asked(attention, d_k=2, T=4, seed=900):
    """Asks an attention function (S, W_Q, W_K, W_V) -> output for its weights: with S the identity (T positions of
    T features) and W_V the identity, V is the identity and the output is the weights matrix itself, (1, T, T).
    Returns {"weights", "scores"}: what it gave, and the scores Q Kᵀ of that call."""
    S = torch.eye(T, device=DEVICE)[None]                                                     # (1, T, T)
    W_Q, W_K = seeded_randn(T, d_k, seed=seed, scale=1.5), seeded_randn(T, d_k, seed=seed + 1, scale=1.5)
    return {"weights": attention(S, W_Q, W_K, torch.eye(T, device=DEVICE)),
            "scores": (S @ W_Q) @ (S @ W_K).transpose(-2, -1)}


def heads_weights_asked(attention, num_heads=2, T=4, seed=910):
    """Asks a multi-head attention function (S, W_Q, W_K, W_V, W_O, num_heads) -> output for every head's weights:
    hidden = num_heads·T, S's first T features are the identity (the others 0), W_V copies them into every head and W_O
    is the identity, so that the output is every head's T × T weights side by side, (1, T, num_heads·T). Returns
    {"weights", "scores"}, (num_heads, T, T) each: what it gave, and each head's scores Q_h K_hᵀ."""
    hidden = num_heads * T
    S = torch.zeros(1, T, hidden, device=DEVICE)
    S[0, :, :T] = torch.eye(T, device=DEVICE)
    W_V = torch.eye(T, device=DEVICE).repeat(1, num_heads)                                   # (T, hidden)
    W_V = torch.cat([W_V, torch.zeros(hidden - T, hidden, device=DEVICE)])                   # (hidden, hidden)
    W_Q, W_K = seeded_randn(hidden, hidden, seed=seed, scale=1.5), seeded_randn(hidden, hidden, seed=seed + 1, scale=1.5)
    output = attention(S, W_Q, W_K, W_V, torch.eye(hidden, device=DEVICE), num_heads=num_heads)
    Q, K = (S @ W_Q)[0].view(T, num_heads, T).transpose(0, 1), (S @ W_K)[0].view(T, num_heads, T).transpose(0, 1)
    return {"weights": output[0].reshape(T, num_heads, T).transpose(0, 1), "scores": Q @ K.transpose(-2, -1)}


def describe_heads_weights(asked_data, what="multi_head_attention"):
    """In words, what every head's weights (heads_weights_asked) are consistent with: one sentence when every head
    says the same, else one per head; None when they can't be read."""
    if not isinstance(asked_data, dict) or not isinstance(asked_data.get("weights"), torch.Tensor):
        return None
    weights, scores = asked_data["weights"], asked_data["scores"]
    if weights.shape != scores.shape or weights.dim() != 3:
        return None
    said = [describe_attention_weights({"weights": w[None], "scores": s[None]}, d_k=s.shape[-1], what=what)
            for w, s in zip(weights, scores)]
    if None in said:
        return None
    if len(set(said)) == 1:
        return "in every head, " + said[0]
    return "; ".join(f"in head {h}, {sentence}" for h, sentence in enumerate(said))


def describe_attention_weights(asked_data, d_k=2, what="self_attention"):
    """In words, what the weights an attention function gave (attention_weights_asked) are consistent with; None when
    they can't be read (no answer, another shape)."""
    if not isinstance(asked_data, dict) or not isinstance(asked_data.get("weights"), torch.Tensor):
        return None
    A, s = asked_data["weights"].detach().float().cpu(), asked_data["scores"].detach().float().cpu()
    if A.shape != s.shape or not torch.isfinite(A).all():
        return None
    A, s = A[0], s[0]
    rows, columns, ones = A.sum(-1), A.sum(-2), torch.ones(A.shape[0])
    if not torch.allclose(rows, ones, atol=1e-3):
        if torch.allclose(columns, ones, atol=1e-3):
            return ("asked with values that are the identity, it returns weights in which each key's weights sum to 1 "
                    "over the queries, where each query's weights should sum to 1 over the keys (the last dimension)")
        if (A < -1e-6).any():
            return ("asked with values that are the identity, it returns negative weights: the output is not a "
                    "weighted average of the value rows (the weights of a query should be a softmax over the keys)")
        low, high = f"{rows.min().item():.3g}", f"{rows.max().item():.3g}"
        return (f"asked with values that are the identity, it returns weights whose sum over the keys is "
                f"{low if low == high else low + ' to ' + high}, not 1: the output is not a weighted average of the "
                "value rows (the weights of a query should be a softmax over the keys)")
    upper = torch.triu(torch.ones_like(A, dtype=torch.bool), diagonal=1)
    if (A[upper].abs() < 1e-6).all():
        return (f"the weights of every later position are 0: {what} has no causal mask (causal attention comes "
                "later)")
    y = A.clamp_min(1e-30).log()
    y, x = y - y.mean(-1, keepdim=True), s - s.mean(-1, keepdim=True)
    factor = ((x * y).sum() / (x * x).sum()).item()
    right = 1 / math.sqrt(d_k)
    if (y - factor * x).abs().max() > 1e-3 * max(1.0, y.abs().max().item()):
        return "the weights of a query sum to 1 over the keys, but they are not a softmax of the scores Q Kᵀ (scaled)"
    if abs(factor - right) <= 1e-3 * right:
        return ("its attention weights are right (a softmax over the keys of Q Kᵀ / √d_k): the mistake is in what "
                "they are multiplied with (the values, V = S W_V) or in what is returned")
    return (f"its attention weights are a softmax of the scores Q Kᵀ multiplied by {factor:.3g}, where they should be "
            f"divided by √d_k, that is multiplied by {right:.3g} (d_k = {d_k}, the size of one key)")


def loss_weights_asked(loss_function, logits, input_ids, attention_mask):
    """Asks a next-token loss which positions it counts, and how: the gradient of its loss with respect to the
    logits (B, T, V). Returns {"gradient", "probabilities"} (None when the loss has no gradient)."""
    logits = logits.detach().clone().requires_grad_(True)
    loss = loss_function(logits, input_ids, attention_mask)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad or loss.dim() != 0:
        return None
    loss.backward()
    return {"gradient": logits.grad, "probabilities": logits.detach().softmax(-1)}


def describe_loss_weights(asked_data, input_ids, attention_mask, eos_id=0):
    """In words, what the gradient of a cross-entropy loss (loss_weights_asked) says about it: which token each position
    is trained to predict, which positions count, and how much each weighs. None when it can't be read. The gradient
    of a loss that weighs the cross-entropy of position (b, t) predicting token y by w is w (p - onehot(y)) there."""
    if not isinstance(asked_data, dict) or not isinstance(asked_data.get("gradient"), torch.Tensor):
        return None
    G, p = asked_data["gradient"].detach().float().cpu(), asked_data["probabilities"].detach().float().cpu()
    input_ids, attention_mask = input_ids.cpu(), attention_mask.cpu()
    B, T, V = G.shape
    target = G.argmin(-1)                                                       # (B, T): the token each position raises
    weight = G.gather(-1, target[..., None])[..., 0] / (p.gather(-1, target[..., None])[..., 0] - 1)
    weight = torch.where(G.abs().amax(-1) < 1e-9, torch.zeros_like(weight), weight)
    if not torch.allclose(G, weight[..., None] * (p - F.one_hot(target, V)), atol=1e-6, rtol=1e-3):
        return None                                                             # not a weighted cross-entropy
    counted = weight > 1e-9
    if not counted.any():
        return "its loss doesn't change when the logits do"
    b, t = counted.nonzero(as_tuple=True)

    def predicts(shift):
        source = t + shift
        return bool(((source >= 0) & (source < T)).all() and (target[b, t] == input_ids[b, source.clamp(0, T - 1)]).all())

    if not predicts(1):
        for shift, words in [(0, "the token at its own position: the targets are not shifted"),
                             (2, "the token two positions later: the targets are shifted by two"),
                             (-1, "the token before it: the shift goes the wrong way")]:
            if predicts(shift):
                return f"each position it counts is trained to predict {words}"
        return "the tokens its positions are trained to predict are not the next tokens of the text"
    real = torch.zeros(B, T, dtype=torch.bool)
    real[:, :-1] = attention_mask[:, 1:].bool()                                 # positions whose target is a real token
    said = []
    padded = int((counted & ~real).sum())
    if padded:
        said.append(f"{padded} position{'s' * (padded > 1)} whose target is padding (attention_mask 0) count in the loss")
    left_out = real & ~counted
    if left_out.any():
        eos = bool((input_ids.roll(-1, 1)[left_out] == eos_id).all())
        said.append(f"{int(left_out.sum())} real target token(s) (attention_mask 1) don't count"
                    + (": they are EOS tokens inside the text, which count like any other token" if eos else ""))
    n, w = int(counted.sum()), weight[counted]
    if torch.allclose(w, torch.ones_like(w), rtol=1e-3):
        said.append(f"the losses of the {n} positions it counts are summed, where the loss is their mean")
    elif not torch.allclose(w, torch.full_like(w, 1 / n), rtol=1e-3):
        rows = [int(counted[row].sum()) for row in range(B)]
        per_row = torch.tensor([1 / (B * rows[row]) if rows[row] else 0.0 for row in range(B)])[b]
        if torch.allclose(w, per_row, rtol=1e-3):
            said.append("the losses are averaged per sequence, then over the sequences: a short sequence's tokens weigh "
                        "more than a long one's, where every real target token should weigh the same")
        elif torch.allclose(w, torch.full_like(w, w[0].item()), rtol=1e-3):
            said.append(f"each of the {n} positions it counts weighs 1/{1 / w[0].item():.3g}, where their mean gives "
                        f"each 1/{n}: the sum is divided by another number than the count of real targets")
    return "; ".join(said) or None

DEVICE = torch.device(device)
# While your notebook is graded, its checks only call your code and send what it returns to the grader,
# which computes the points outside this notebook.
Checks.mode = "probe" if GRADING else "local"


class StandInAttention(nn.Module):
    """A stand-in for CausalSelfAttention in the public checks of Block: each position averages the positions up to it."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.project = nn.Linear(hidden_size, hidden_size)

    def forward(self, x):
        positions = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        return self.project(x.cumsum(dim=1) / positions)


class StandInFeedForward(nn.Linear):
    """A stand-in for FeedForward in the public checks of Block."""

    def __init__(self, hidden_size, dropout):
        super().__init__(hidden_size, hidden_size)


def stand_in_loss(logits, input_ids, attention_mask):
    """A stand-in for lm_loss in the public checks of train_step (it ignores padding: fine without padding)."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())


class TinyLM(nn.Module):
    """A tiny bigram language model for the public checks of train_step: they don't depend on your Transformer."""

    def __init__(self, vocab_size=20, seq_len=6):
        super().__init__()
        self.seq_len = seq_len
        self.embedding = nn.Embedding(vocab_size, 16)
        self.head = nn.Linear(16, vocab_size)

    def forward(self, input_ids):
        assert input_ids.shape[1] <= self.seq_len, f"TinyLM takes at most {self.seq_len} tokens"
        return self.head(self.embedding(input_ids))


def with_last_position_changed(inputs):
    """A copy of `inputs` (B, T, ...) whose last position differs: to see whether earlier outputs depend on it."""
    changed = inputs.clone()
    if changed.is_floating_point():
        changed[:, -1] = changed[:, -1] + 5.0
    else:
        changed[:, -1] = (changed[:, -1] + 1) % 50
    return changed


EVAL_MODE_DROPOUT = ("in eval mode two calls give different outputs: dropout must be off in eval mode "
                     "(nn.Dropout is off in eval mode by itself; F.dropout only when told whether the module is training)")


def expect_same_in_eval(outputs, shape):
    """Fails unless two calls of a module in eval mode ({"first", "second"}) gave the same output of this shape."""
    expect_tensor(outputs["first"], shape)
    assert torch.allclose(outputs["first"], outputs["second"], atol=1e-6, rtol=1e-6), EVAL_MODE_DROPOUT


def drawn_run():
    """Whether a probe runs on inputs drawn while grading. A check that compares two outputs in the notebook (a batch
    with each sequence alone, training mode with eval mode) then sends only the output it is about, which must be
    the grader's: code in the kernel could make the other one, already right, stand in for it."""
    return bool(Checks.salt)


# The checks of a module set its weights themselves, to numbers drawn for the check (other numbers while graded),
# whatever the order in which your module creates its layers: yours and the instructor's then compute the same
# function, and its values can be compared.

def _cannot_set(what, name, shape, expected):
    return AssertionError(f"could not set the weights of {what} for this check: its learned parameter {name!r} of "
                          f"shape {tuple(shape)} is none of {expected}")


def symmetric_weights(size, seed, count=4, scale=0.3):
    """`count` random symmetric size × size matrices (symmetric: x @ W and nn.Linear with weight W agree)."""
    found = []
    for i in range(count):
        G = seeded_randn(size, size, seed=seed + i, scale=scale)
        found.append((G + G.T) / 2)
    return found


def _head_of(name):
    """("heads.*.query.weight", 1) for "heads.1.query.weight": the role of a parameter with its head's number taken
    out (the last number in its name), or None when its name holds no number."""
    parts = name.split(".")
    numbers = [i for i, part in enumerate(parts) if part.isdigit()]
    if not numbers:
        return None
    i = numbers[-1]
    return ".".join(parts[:i] + ["*"] + parts[i + 1:]), int(parts[i])


def set_attention_weights(module, matrices, num_heads, what="your CausalSelfAttention"):
    """Sets an attention module's learned projections to `matrices` (symmetric hidden × hidden), in the order the
    module creates them, and every bias to 0; returns how many it used. Understood layouts: hidden × hidden
    nn.Linear layers or matrices, fused (k·hidden, hidden) weights (nn.MultiheadAttention's too) or (hidden, k·hidden)
    matrices, one (d_h, hidden) nn.Linear or (hidden, d_h) matrix per head, numbered in their names, and every head's
    matrices in one (heads, hidden, d_h) or (heads, d_h, hidden) parameter, as einsum layouts keep them."""
    hidden = matrices[0].shape[0]
    d_h = hidden // num_heads
    expected = (f"a {hidden} × {hidden} projection, a fused (k·{hidden}, {hidden}) one, one head's ({d_h}, {hidden}) "
                f"projection, every head's ({num_heads}, {hidden}, {d_h}) or ({num_heads}, {d_h}, {hidden}) ones, or a bias")
    roles, used = {}, 0

    def take(k=1):
        nonlocal used
        if used + k > len(matrices):
            raise AssertionError(f"could not set the weights of {what} for this check: it has more learned "
                                 f"projections than the {len(matrices)} of attention (query, key, value, output)")
        used += k
        return matrices[used - k:used]

    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.requires_grad:  # not learned (a mask kept as a frozen parameter): left as it is
                continue
            if p.dim() == 1 or (p.dim() == 2 and tuple(p.shape) == (num_heads, d_h) and d_h != hidden):  # biases
                p.zero_()
                continue
            if p.dim() == 3 and p.shape[0] == num_heads and tuple(p.shape[1:]) in ((hidden, d_h), (d_h, hidden)):
                blocks = take()[0].view(hidden, num_heads, d_h).permute(1, 0, 2)  # head h: columns h·d_h to (h+1)·d_h
                p.copy_(blocks if p.shape[1] == hidden else blocks.transpose(1, 2))  # (the same rows, transposed)
                continue
            if p.dim() != 2:
                raise _cannot_set(what, name, p.shape, expected)
            rows, cols = p.shape
            head = _head_of(name) if d_h != hidden else None
            if rows == cols == hidden:
                p.copy_(take()[0])
            elif cols == hidden and rows % hidden == 0:
                p.copy_(torch.cat(take(rows // hidden), dim=0))
            elif rows == hidden and cols % hidden == 0:
                p.copy_(torch.cat(take(cols // hidden), dim=1))
            elif head and head[1] < num_heads and (rows, cols) in ((d_h, hidden), (hidden, d_h)):
                if head[0] not in roles:
                    roles[head[0]] = take()[0]
                columns = roles[head[0]][:, head[1] * d_h:(head[1] + 1) * d_h]  # = those rows, transposed
                p.copy_(columns if rows == hidden else columns.T)
            else:
                raise _cannot_set(what, name, p.shape, expected)
    return used


def set_feed_forward_weights(module, A, what="your FeedForward"):
    """Sets a feed-forward module's way up to x ↦ x Aᵀ and its way back to h ↦ h A (A: (4·hidden, hidden)), every
    bias to 0: nn.Linear layers and raw matrices used as x @ W compute the same function."""
    up, down = tuple(A.shape), tuple(A.T.shape)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if tuple(p.shape) == up:
                p.copy_(A)
            elif tuple(p.shape) == down:
                p.copy_(A.T)
            elif p.dim() == 1:
                p.zero_()
            else:
                raise AssertionError(
                    f"could not set the weights of {what} for this check: expected a layer from hidden_size to "
                    f"4 * hidden_size = {up[0]} and one back to hidden_size = {up[1]}, found a learned parameter "
                    f"of shape {tuple(p.shape)}")


def set_stand_in_weights(modules, seed, scale=0.5):
    """Sets the weights of the stand-in modules of a check (the checks' own classes, created by your code in
    whatever order): the i-th one gets the numbers drawn from seed + 10·i, parameter after parameter."""
    with torch.no_grad():
        for i, module in enumerate(modules):
            for j, p in enumerate(module.parameters()):
                p.copy_(seeded_randn(*p.shape, seed=seed + 10 * i + j, scale=scale))


# The scale and the shift of a layer norm written as its own class (nanoGPT's, say), by the names they usually have.
LAYER_NORM_ROLES = {"weight": 1.0, "gamma": 1.0, "scale": 1.0, "g": 1.0, "bias": 0.0, "beta": 0.0, "shift": 0.0, "b": 0.0}


def set_language_model_weights(model, vocab_size, hidden_size, seq_len, seed, blocks=()):
    """Sets a language model's word embeddings to E (vocab_size, hidden_size), its output layer to E too (tied or
    not: logits = h Eᵀ, no bias), its position embeddings to P (seq_len, hidden_size), its layer norms to 1 and 0,
    and the stand-in `blocks` by set_stand_in_weights. Returns {"E", "P"}."""
    E = seeded_randn(vocab_size, hidden_size, seed=seed)
    P = seeded_randn(seq_len, hidden_size, seed=seed + 1)
    set_stand_in_weights(blocks, seed + 2, scale=0.3)
    inside = {id(p) for block in blocks for p in block.parameters()}
    with torch.no_grad():
        for name, p in model.named_parameters():
            owner = model.get_submodule(name.rpartition(".")[0])
            shape = tuple(p.shape)
            if id(p) in inside:
                continue
            if isinstance(owner, nn.LayerNorm):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif shape == (hidden_size,) and name.rpartition(".")[2].lower() in LAYER_NORM_ROLES:  # a layer norm of your own
                p.fill_(LAYER_NORM_ROLES[name.rpartition(".")[2].lower()])
            elif shape == (vocab_size, hidden_size):
                p.copy_(E)
            elif shape == (hidden_size, vocab_size):
                p.copy_(E.T)
            elif shape in ((seq_len, hidden_size), (1, seq_len, hidden_size)):
                p.copy_(P.view(shape))
            elif shape == (vocab_size,):
                p.zero_()
            else:
                raise _cannot_set("your Transformer", name, shape,
                                  f"word embeddings ({vocab_size}, {hidden_size}), position embeddings ({seq_len}, "
                                  f"{hidden_size}), an output layer back to the vocabulary, or a layer norm")
    return {"E": E, "P": P}


# %% tags=["grader-only"]
# Grader-only: the reference implementations, the known mistakes and the tools of the hidden checks' verdicts.
# Cells tagged grader-only never leave the grader: they are not in the release, the solution or the gradebook,
# and the student's kernel never runs them. The probes of the hidden checks (in the test cells) do run there:
# they call the student's code and return plain data, which the verdicts below judge.
import copy
import itertools

TOLERANCE = dict(atol=1e-4, rtol=1e-4)  # float32, on the CPU and on CUDA alike


def _close(a, b):
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.detach().float().cpu(), b.detach().float().cpu(), equal_nan=True, **TOLERANCE))


# What each known wrong variant means, in words a student understands.
MISTAKES = {
    "scale:none": "the scores are not scaled: divide Q Kᵀ by √d_k",
    "scale:model": "the scores are divided by the square root of the hidden size; divide by √d_k, the size of one key (one head's size)",
    "scale:multiply": "the scores are multiplied by √d_k instead of divided by it",
    "softmax_dim": "the softmax is taken over the wrong dimension: for each query, the weights over the keys (the last dimension) must sum to 1",
    "split": "the heads are split without a transpose: each head must see every position of its own d_h features: the heads dimension comes before the positions, (B, heads, T, d_h), it is not carved out of them",
    "merge": "the heads are merged without transposing back: bring the positions back before the heads, so that each position joins the d_h features of every head",
    "no_W_O": "the concatenated heads are not projected back with the output projection (W_O)",
    "heads_ignored": "the number of heads is not taken from num_heads",
    "mask:none": "there is no causal mask: each position also attends to later positions",
    "mask:triu": "the mask points the wrong way: position i must attend to positions j ≤ i (the lower triangle), not j ≥ i",
    "mask:+1": "the mask is off by one: each position can also see the next one",
    "mask:-1": "the mask is off by one: each position is hidden from itself (the first row is all masked, hence NaN)",
    "mask:zero": "masked scores are set to 0 instead of -inf: exp(0) = 1, so future positions still get weight",
    "mask:after_softmax": "the mask is applied after the softmax, so the weights no longer sum to 1: mask the scores, then take the softmax",
    "not_shifted": "the targets are not shifted: the logits at position t must predict the token at position t + 1",
    "shifted_twice": "the targets are shifted by two positions instead of one",
    "padding_counted": "padded positions are counted in the loss: average only over targets whose attention_mask is 1",
    "input_side_mask": "the mask is taken on the input side (attention_mask[:, :-1]); take it on the target side (attention_mask[:, 1:])",
    "per_row_mean": "the loss is averaged per sequence, then over sequences; average over all real target tokens at once",
    "eos_masked": "every EOS token is ignored, including real ones inside the text: mask the padding with attention_mask, not by token id",
    "divided_by_all": "the padded positions are zeroed but still counted in the average ((loss * mask).mean() divides by every position): divide the sum of the masked losses by the number of real target tokens (mask.sum())",
}


def _attend(Q, K, V, num_heads, causal, mistake=None, input_size=None):
    """Multi-head attention on projected (B, T, hidden) tensors; returns the merged heads (B, T, hidden).

    `mistake` names one of MISTAKES, to reproduce a known wrong variant for diagnosis; `input_size` is the
    size of the sequence's elements before projection (the "scale:model" mistake divides by its root).
    """
    B, T, hidden = Q.shape
    input_size = input_size or hidden

    def split(X):
        d = X.shape[-1] // num_heads
        if mistake == "split":
            return X.reshape(B, num_heads, T, d)
        return X.reshape(B, T, num_heads, d).transpose(1, 2)  # (B, H, T, d)

    Q, K, V = split(Q), split(K), split(V)
    scores = Q @ K.transpose(-2, -1)  # (B, H, T, T)
    d_k = Q.shape[-1]
    if mistake == "scale:model":
        scores = scores / math.sqrt(input_size)
    elif mistake == "scale:multiply":
        scores = scores * math.sqrt(d_k)
    elif mistake != "scale:none":
        scores = scores / math.sqrt(d_k)
    keep = None
    if causal and mistake != "mask:none":
        ones = torch.ones(T, T, dtype=torch.bool, device=Q.device)
        keep = ones.triu() if mistake == "mask:triu" else ones.tril({"mask:+1": 1, "mask:-1": -1}.get(mistake, 0))
        if mistake == "mask:zero":
            scores = scores.masked_fill(~keep, 0.0)
        elif mistake != "mask:after_softmax":
            scores = scores.masked_fill(~keep, float("-inf"))
    weights = scores.softmax(dim=-2 if mistake == "softmax_dim" else -1)
    if mistake == "mask:after_softmax":
        weights = weights.masked_fill(~keep, 0.0)
    out = weights @ V  # (B, H, T, d)
    if mistake == "merge":
        return out.reshape(B, T, -1)
    return out.transpose(1, 2).reshape(B, T, -1)


def _ref_attention(S, W_Q, W_K, W_V, W_O=None, num_heads=1, causal=False, mistake=None):
    """Reference for the three attention functions (W_O=None: single head, no output projection)."""
    out = _attend(S @ W_Q, S @ W_K, S @ W_V, num_heads, causal, mistake, input_size=S.shape[-1])
    if W_O is not None and mistake != "no_W_O":
        out = out @ W_O
    return out


def _expect_values(output, expected, variants=(), what="output", behaviour=None):
    """Fails unless `output` matches `expected`; names the known mistake it matches, if any, or else says what the
    output is consistent with (`behaviour`: see `unexplained`).

    `variants` maps a key of MISTAKES (or a message) to the output that mistake would give:
    a dict, or a list of (mistake, output) pairs.
    """
    expect_tensor(output, expected.shape, f"the {what}")
    if _close(output, expected):
        return
    for mistake, wrong in (variants.items() if isinstance(variants, dict) else variants):
        if not _close(wrong, expected) and _close(output, wrong):
            raise AssertionError(f"wrong {what}: {MISTAKES.get(mistake, mistake)}")
    if torch.isnan(output).any():
        raise AssertionError(f"{what} contains NaN")
    raise AssertionError(unexplained(f"wrong {what}", (output.detach().float() - expected.float()).abs().max().item(),
                                     behaviour))


def _expect_causal(outputs, what="the output"):
    """Fails if the outputs at earlier positions changed when only the last position of the input did."""
    before, after = outputs["before"], outputs["after"]
    expect_tensor(after, before.shape, what)
    assert _close(before[:, :-1], after[:, :-1]), (
        f"changing the last token changed {what} at earlier positions: a position must not attend to later ones")


def _expect_same_in_eval(outputs):
    assert _close(outputs["first"], outputs["second"]), EVAL_MODE_DROPOUT


ATTENTION_MISTAKES = ["scale:none", "scale:model", "scale:multiply", "softmax_dim", "split", "merge", "mask:none",
                      "mask:triu", "mask:+1", "mask:-1", "mask:zero", "mask:after_softmax"]


def _attention_match(output, x, weights, num_heads):
    """Which causal self-attention `output` is, for the input x and the projections a check set to `weights` (in
    any order: the module declares them in the order it likes): None when it is the right one, the key of MISTAKES
    of a known wrong one; AssertionError when it is none of them."""
    expect_tensor(output, x.shape)
    for q, k, v in itertools.permutations(weights[:3]):  # a module with three projections: no output projection
        if _close(output, _attend(x @ q, x @ k, x @ v, num_heads, causal=True)):
            return "no_W_O"
    for mistake in [None] + ATTENTION_MISTAKES:
        for q, k, v, o in itertools.permutations(weights):
            if _close(output, _attend(x @ q, x @ k, x @ v, num_heads, causal=True, mistake=mistake) @ o):
                return mistake
    if torch.isnan(output.detach()).any():
        raise AssertionError("the output contains NaN")
    raise AssertionError("the output does not match causal multi-head attention computed with the projections the "
                         "check set (query, key, value, then output)")


def _attention_inputs(data, reference):
    """(output, input) pairs of an attention probe, its outputs taken from `data` and its inputs from `reference`
    (the grader's own run: while graded, the kernel's copy of the inputs is never used)."""
    pairs = []
    for key, x in reference["inputs"].items():
        output = data["outputs"].get(key)
        if output is None and key == "shorter":  # failing for T < seq_len is another check's mistake
            continue
        pairs.append((output, x))
    return pairs


def _attention_computed(data, reference):
    """compare: each output is causal attention computed with the weights the check set, right or with one of the
    known mistakes (the value checks judge which): your module computed it."""
    for output, x in _attention_inputs(data, reference):
        _attention_match(output, x, reference["weights"], reference["num_heads"])


def _attention_values(data, reference):
    """compare: each output is the right causal attention for the weights the check set."""
    for output, x in _attention_inputs(data, reference):
        mistake = _attention_match(output, x, reference["weights"], reference["num_heads"])
        if mistake is not None:
            raise AssertionError(f"the output has the wrong values: {MISTAKES[mistake]}")


def _attention_causal(data, reference):
    """compare: both outputs are attention computed with the weights the check set, and the earlier positions'
    outputs did not change when the last position did."""
    _attention_computed(data, reference)
    _expect_causal(data["outputs"])


def _ff_variants(x, A):
    """The outputs of a feed-forward whose weights a check set (see set_feed_forward_weights): right (None), and
    with the known mistakes."""
    up = x @ A.T
    return {None: F.relu(up) @ A,
            "there is no activation between the two layers: add a ReLU": up @ A,
            "the activation should be a ReLU": F.gelu(up) @ A,
            "the ReLU is applied after the second layer: it goes between the two layers": F.relu(up @ A),
            "there is a ReLU after the second layer too: only between the two layers": F.relu(F.relu(up) @ A)}


def _ff_match(output, x, A):
    expect_tensor(output, x.shape)
    for mistake, expected in _ff_variants(x, A).items():
        if _close(output, expected):
            return mistake
    raise AssertionError("the output does not match two layers (hidden → 4 × hidden → hidden) computed with the "
                         "weights the check set")


def _ff_values(data, reference):
    """compare: each output is the right feed-forward for the weights the check set."""
    for key, x in reference["inputs"].items():
        mistake = _ff_match(data["outputs"][key], x, reference["A"])
        if mistake is not None:
            raise AssertionError(f"wrong output: {mistake}")


def _attention_weights_dropout(data, reference):
    """compare: the output in training mode is attention computed by the grader on its own one-token inputs, with
    the projections the check set, with dropout on the attention weights (see _one_token_dropout)."""
    _expect_weights_dropout(data["trained"], reference["x"], reference["weights"], reference["num_heads"])


def _attention_output_dropout(data, reference):
    """compare: as _attention_weights_dropout, with dropout on the output."""
    _expect_output_dropout(data["trained"], reference["x"], reference["weights"], reference["num_heads"])


def _ff_computed(data, reference):
    """compare: each output is the feed-forward computed with the weights the check set (right or with a known
    mistake, which the value checks judge)."""
    for key, x in reference["inputs"].items():
        _ff_match(data["outputs"][key], x, reference["A"])


def _ff_output_dropout(data, reference):
    """compare: in training mode with dropout 0.5 on the output, the feed-forward computed by the grader with the
    weights the check set (right, or with a known mistake, which the value checks judge), each value either zeroed
    or doubled, about half of them zeroed (never NaN). The probe sends no eval-mode output to compare it with (see
    drawn_run): the grader computes it."""
    x, A = reference["inputs"]["trained"], reference["A"]
    trained = data["outputs"]["trained"]
    expect_tensor(trained, x.shape, "the output in training mode")
    trained = trained.detach().double().cpu()
    assert torch.isfinite(trained).all(), "the output in training mode contains inf or NaN"
    zeroed = trained == 0
    assert any(bool((zeroed | torch.isclose(trained, 2 * v.detach().double().cpu(), **TOLERANCE)).all())
               for v in _ff_variants(x, A).values()), (
        "in training mode, the output should be the eval-mode output with dropout 0.5 applied to it: each value "
        "zeroed, or doubled (divided by 1 - p)")
    share = zeroed.double().mean().item()
    assert 0.3 <= share <= 0.7, ("with dropout 0.5 in training mode, about half of the outputs should be zeroed: "
                                 "add dropout on the output")


# The layer norms' epsilon a student may choose (nn.LayerNorm's 1e-5, or another): on inputs drawn while grading, a
# position whose features vary little can tell them apart.
NORM_EPSILONS = (1e-5, 1e-6, 1e-8, 1e-12)


def _block_expected(x, attend, feed_forward, eps=1e-5):
    """A Block's (pre-norm, post-norm) outputs on x, with these sub-layers, and the input each sub-layer gets:
    {"output", "attention", "feed_forward"} for each."""
    def norm(h):
        return F.layer_norm(h, h.shape[-1:], eps=eps)

    with torch.no_grad():
        h = x + attend(norm(x))
        pre = {"output": h + feed_forward(norm(h)), "attention": norm(x), "feed_forward": norm(h)}
        h = norm(x + attend(x))
        post = {"output": norm(h + feed_forward(h)), "attention": x, "feed_forward": h}
    return pre, post


def _block_match(data, x, attend, feed_forward, what):
    """Passes when `data` ({"output", and optionally the sub-layers' inputs}) is a pre-norm or a post-norm Block."""
    for expected in (e for eps in NORM_EPSILONS for e in _block_expected(x, attend, feed_forward, eps)):
        if all(_close(data.get(key), value) for key, value in expected.items() if key in data):
            return
    raise AssertionError(f"{what} does not match a Block (pre-norm or post-norm) computed on the check's sub-layers")


def _ref_lm_loss(logits, input_ids, attention_mask, mistake=None):
    """Reference next-token loss: mean cross-entropy over the target tokens whose mask is 1."""
    if mistake == "not_shifted":
        predictions, targets, mask = logits, input_ids, attention_mask
    elif mistake == "shifted_twice":
        predictions, targets, mask = logits[:, :-2], input_ids[:, 2:], attention_mask[:, 2:]
    else:
        predictions, targets, mask = logits[:, :-1], input_ids[:, 1:], attention_mask[:, 1:]
    if mistake == "input_side_mask":
        mask = attention_mask[:, :-1]
    losses = F.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1),
                             reduction="none").view(targets.shape)
    if mistake == "padding_counted":
        return losses.mean()
    if mistake == "eos_masked":
        mask = mask * (targets != PAD_ID_FOR_TESTS)
    if mistake == "per_row_mean":
        mask = mask.float()
        return ((losses * mask).sum(1) / mask.sum(1)).mean()
    if mistake == "divided_by_all":
        return (losses * mask.float()).mean()
    mask = mask.float()
    return (losses * mask).sum() / mask.sum()


# %% [markdown]
# # Attention
#
# Attention is a crucial component of the transformer: it captures dependencies between the positions of two sequences of elements. In our case, and in most NLP applications, sequences are sentences and elements are (sub)words.
# It is a powerful operation that learns an alignment between the elements of two sequences: it scores how related each element of sequence 1 is to each element of sequence 2.
# Understanding how attention works, and being able to implement it, is essential for anyone working with transformers.
#
# Given query ($Q$), key ($K$) and value ($V$) tensors, the attention mechanism computes a weighted sum of the value tensor, weighted by the similarity between the query and key tensors, as in the following equation:
#
# $$
# \text{Attention}(Q,K,V) = \text{softmax}\Big(\frac{QK^T}{\sqrt{d_k}}\Big)V
# $$
#
# where
# - $Q$ represents the query tensor.
# - $K$ represents the key tensor.
# - $V$ represents the value tensor.
# - $d_k$ represents the dimensionality of the key tensor.
#
# This is the figure from the [original Transformer paper](https://proceedings.neurips.cc/paper_files/paper/2017/hash/3f5ee243547dee91fbd053c1c4a845aa-Abstract.html) that shows the computations used in attention.
#
# Forget about the right part for now: we'll get back to it later in the lab.
#
# ![Figure 2 of the Transformer paper. Left: scaled dot-product attention, MatMul of Q and K, Scale, optional Mask, SoftMax, MatMul with V. Right: multi-head attention, h heads of scaled dot-product attention on linear projections of V, K and Q, concatenated, then a final linear layer](https://miro.medium.com/v2/resize:fit:1270/1*LpDpZojgoKTPBBt8wdC4nQ.png)
#
# In this exercise, we dive into the attention mechanism. We first build a simple self-attention function, then extend it to multi-head attention, add causal masking, and finally wrap it in a PyTorch module.

# %% [markdown]
# ### Why divide by $\sqrt{d_k}$?
#
# The score of a query $q$ and a key $k$ is their dot product, $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$: a sum of $d_k$ terms. When the entries of $q$ and $k$ are independent, with mean 0 and variance 1, each term $q_i k_i$ has variance 1, so the sum has variance $d_k$, and a standard deviation of $\sqrt{d_k}$ (8 for $d_k = 64$). The scores of a query then differ by tens, and the softmax of such scores is close to one-hot: one key takes nearly all the weight. A saturated softmax has tiny gradients (the derivative of a weight $p$ with respect to its own score is $p(1 - p)$, close to 0 when $p$ is close to 0 or 1), so the model learns slowly. Dividing the scores by $\sqrt{d_k}$ brings their variance back to 1, whatever the size of the keys.
#
# The cell below shows it on random vectors. It is not an exercise: just run it. You should see a standard deviation of about 7.8 and an average largest weight of about 0.87 without the scaling, against about 0.98 and 0.32 with it (equal weights over 10 keys would be 0.10 each).

# %%
# Not an exercise: random queries and keys, with entries of mean 0 and variance 1 (seeded: everyone gets the same numbers).
torch.manual_seed(0)
d_k, n_queries, n_keys = 64, 1000, 10
q, k = torch.randn(n_queries, d_k), torch.randn(n_keys, d_k)
scores = q @ k.T  # (n_queries, n_keys): every dot product q·k
for name, s in [("q·k", scores), ("q·k / √d_k", scores / math.sqrt(d_k))]:
    largest = s.softmax(dim=-1).max(dim=-1).values  # the largest attention weight of each query
    print(f"{name:>10}: standard deviation {s.std():.2f}, largest weight of a query {largest.mean():.2f} on average, "
          f"above 0.9 for {largest.gt(0.9).float().mean():.0%} of the queries")
print(f"(equal weights over {n_keys} keys would be {1 / n_keys:.2f} each)")


# %% [markdown]
# ## Building a simple self-attention function (10 points)
#
# In self-attention, a single sequence provides the query $Q$, the key $K$ and the value $V$, so attention is computed within the sequence itself. This is useful for syntax, for example: an attention head can model the relationship between parts of speech such as subjects and verbs.
#
# Given an input sequence $S$ and the projection weights $W_Q$, $W_K$ and $W_V$, complete the `self_attention` function in the cell below.
#
# You need to:
# - compute the query, key and value projections: $Q = S W_Q$, $K = S W_K$, $V = S W_V$;
# - compute the attention scores, the dot products between queries and keys, scaled by $\sqrt{d_k}$ where $d_k$ is the size of one key (`W_K.shape[-1]`);
# - apply a softmax to the scores to get the attention weights: for each query, the weights over the keys sum to 1;
# - multiply the attention weights with the values, and return the result.
#
# Hint, matrix sizes (B: batch size, T: sequence length, d: input size, d_k: key size, d_v: value size):
# - S: B×T×d
# - Q, K: B×T×d_k and V: B×T×d_v
# - Q Kᵀ: B×T×d_k times B×d_k×T gives B×T×T
# - (Q Kᵀ) V: B×T×T times B×T×d_v gives B×T×d_v
#
# The output has shape B×T×d_v.

# %% nbgrader={"grade": false, "grade_id": "self_attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def self_attention(S, W_Q, W_K, W_V):
    ### BEGIN SOLUTION
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V                          # (B, T, d_k), (B, T, d_k), (B, T, d_v)
    scores = Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])   # (B, T, T)
    weights = scores.softmax(dim=-1)                            # each query's weights sum to 1
    return weights @ V                                          # (B, T, d_v)
    ### END SOLUTION


# %% [markdown]
# Try your function on random inputs. They are seeded (`torch.manual_seed(0)`), so everyone gets the same ones, and you can compare with the expected values in the cell's last comment (to about 3 decimals: the last digits may differ from machine to machine).

# %%
torch.manual_seed(0)  # the same random inputs for everyone

# Sequence
S = torch.rand((1, 13, 3))

# Projections
W_Q = torch.rand((3, 2))  # Query weights
W_K = torch.rand((3, 2))  # Key weights
W_V = torch.rand((3, 2))  # Value weights

# Perform self-attention
attended_values = self_attention(S, W_Q, W_K, W_V)

print(f"Output Shape: {attended_values.shape}")
print("First position:", attended_values[0, 0])
# Expected: Output Shape: torch.Size([1, 13, 2]) (B, Sequence, Projection); first position about [0.8365, 1.0821]

# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of self_attention.
def verdict_self_attention_values(data):
    output, asked_data = _answer_and_asked(data)
    S, W_Q, W_K, W_V = _self_attention_inputs(1)
    variants = {m: _ref_attention(S, W_Q, W_K, W_V, mistake=m)
                for m in ["scale:none", "scale:model", "scale:multiply", "softmax_dim"]}
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    variants["the scores are divided by √d_v, the size of one value; divide by √d_k, the size of one key"] = (
        Q @ K.transpose(-2, -1) / math.sqrt(V.shape[-1])).softmax(dim=-1) @ V
    variants["the scores are divided by d_k instead of √d_k"] = (Q @ K.transpose(-2, -1) / K.shape[-1]).softmax(dim=-1) @ V
    _expect_values(output, _ref_attention(S, W_Q, W_K, W_V), variants,
                   behaviour=lambda: describe_attention_weights(asked_data))


def verdict_self_attention_batch(outputs):
    expect_tensor(outputs["batch"], (3, 5, 4), "the output for a batch of 3 sequences")
    for b, alone in enumerate(outputs["alone"]):
        _expect_values(outputs["batch"][b:b + 1], alone, what=f"output for sequence {b} of a batch")


# %% nbgrader={"grade": true, "grade_id": "test_self_attention", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of self_attention: run this cell after your answer (the lines it prints say what was checked)
"""Checks self_attention: output shape, values on a small example, large scores; hidden: other inputs, batches."""
checks = Checks("self_attention", points=10)


def _public_self_attention_output():
    S, W_Q, W_K, W_V = (seeded_randn(*shape, seed=i) for i, shape in enumerate([(2, 5, 6), (6, 4), (6, 4), (6, 3)]))
    return self_attention(S, W_Q, W_K, W_V)


def _public_self_attention_inputs():
    """S (1, 3, 5), W_Q and W_K (5, 2), W_V (5, 3): d_k = 2 and d_v = 3."""
    return (seeded_randn(1, 3, 5, seed=100), seeded_randn(5, 2, seed=101, scale=0.5),
            seeded_randn(5, 2, seed=102, scale=0.5), seeded_randn(5, 3, seed=103))


_SCALED_BY_D_V = "the scores are divided by √d_v, the size of one value; divide by √d_k, the size of one key"
_SCALED_BY_D_K = "the scores are divided by d_k instead of √d_k"


def _self_attention_asked(inputs):
    """Your self_attention's output for `inputs`, and what it answers when asked for its weights (see
    attention_weights_asked): the second only says what a wrong output is consistent with."""
    return {"output": self_attention(*inputs), "asked": asked(lambda: attention_weights_asked(self_attention))}


def _public_self_attention_values(data):
    output, asked_data = _answer_and_asked(data)
    expect_numbers(output, [[[-0.51023, 1.5691, -2.0588],
                             [-1.485, 1.3625, -2.6762],
                             [-2.7775, 1.3225, -3.8022]]], mistakes=[
        ("the scores are not scaled: divide Q Kᵀ by √d_k", [[[-0.021417, 1.4682, -1.4805],
                                                             [-1.5025, 1.3377, -2.6596],
                                                             [-2.8845, 1.3144, -3.8892]]]),
        ("the scores are divided by the square root of the hidden size; divide by √d_k, the size of one key",
         [[[-1.1903, 1.6941, -2.8432],
           [-1.5848, 1.4328, -2.8596],
           [-2.5597, 1.3662, -3.6611]]]),
        ("the scores are multiplied by √d_k instead of divided by it", [[[0.30163, 1.3949, -1.0896],
                                                                         [-1.5882, 1.3291, -2.7265],
                                                                         [-2.9254, 1.3131, -3.9248]]]),
        (_SCALED_BY_D_V, [[[-0.82176, 1.6285, -2.4209],
                           [-1.5124, 1.3883, -2.7352],
                           [-2.6851, 1.3356, -3.7352]]]),
        (_SCALED_BY_D_K, [[[-1.0348, 1.6671, -2.6658],
                           [-1.5485, 1.4119, -2.799],
                           [-2.6139, 1.3507, -3.6901]]]),
        ("the softmax is taken over the wrong dimension: for each query, the weights over the keys (the last dimension) "
         "must sum to 1", [[[-2.6483, 2.0338, -4.6835],
                            [-0.63326, 0.79758, -1.4172],
                            [-4.4517, 2.8245, -6.9777]]]),
    ], behaviour=lambda: describe_attention_weights(asked_data))


def _public_large_score_inputs():
    """Inputs whose scores are all about 900, give or take a few units: exp(900) overflows, while the scaled scores'
    softmax is far from one-hot, so that its values still tell whether the scores are scaled. Each token's first
    feature is 30, and only it reaches the first column of Q and K: Q Kᵀ = 900 + (second columns' product). The
    second feature (-1, 0.3, 1 along the positions) reaches the second columns with weight 1 and the others little,
    so that the first and last queries' weights are never close to uniform nor to one-hot, whatever the inputs drawn
    while graded: either would hide how the scores are scaled."""
    S, W_Q, W_K, W_V = _public_self_attention_inputs()
    S = torch.cat([torch.full_like(S[..., :1], 30.0), torch.tensor([-1.0, 0.3, 1.0], device=S.device)[None, :, None].expand_as(S[..., :1]),
                   S[..., 2:]], dim=-1)
    W_Q, W_K = W_Q.clone(), W_K.clone()
    for W in (W_Q, W_K):
        W[0], W[1], W[2:, 0] = torch.tensor([1.0, 0.0], device=W.device), torch.tensor([0.0, 1.0], device=W.device), 0.0
        W[2:, 1] *= 0.3  # the other features move the second columns a little only
    return S, W_Q, W_K, W_V


def _public_large_scores(output):
    expect_tensor(output, (1, 3, 3))
    assert torch.isfinite(output).all(), (
        "with large scores (about 900) the output contains inf or NaN: the exponential of a large score overflows; "
        "torch.softmax does not (it subtracts each row's maximum first)")


checks.check("output shape (B, T, d_v)", 1, _public_self_attention_output, lambda output: expect_tensor(output, (2, 5, 3)))
checks.check("values on a small example (d_k = 2, d_v = 3)", 3, lambda: _self_attention_asked(_public_self_attention_inputs()),
             _public_self_attention_values)
checks.check("no inf or NaN for large scores", 1, lambda: self_attention(*_public_large_score_inputs()),
             _public_large_scores)
### BEGIN HIDDEN TESTS
def _self_attention_inputs(seed):
    S = seeded_randn(2, 6, 8, seed=seed)
    return S, seeded_randn(8, 4, seed=seed + 1, scale=0.7), seeded_randn(8, 4, seed=seed + 2, scale=0.7), seeded_randn(8, 3, seed=seed + 3)


def _probe_self_attention_batch():
    S = seeded_randn(3, 5, 8, seed=5)
    W_Q, W_K, W_V = seeded_randn(8, 4, seed=6), seeded_randn(8, 4, seed=7), seeded_randn(8, 4, seed=8)
    if drawn_run():  # see drawn_run
        return {"batch": self_attention(S, W_Q, W_K, W_V)}
    return {"batch": self_attention(S, W_Q, W_K, W_V), "alone": [self_attention(S[b:b + 1], W_Q, W_K, W_V) for b in range(3)]}


checks.check("values match softmax(Q Kᵀ / √d_k) V", 3, lambda: _self_attention_asked(_self_attention_inputs(1)),
             "verdict_self_attention_values")
checks.check("sequences in a batch don't mix", 2, _probe_self_attention_batch, "verdict_self_attention_batch")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# ## Multi-head attention (10 points)
#
# However, a single sentence holds more than one kind of relation: number and gender agreement, the semantic relation between subject and object, the role of a verb's arguments, and so on. A single head cannot model them all.
#
# For this reason, we extend the single-head attention function to **multi-head attention**. In the previous implementation, we had one set of weights for the queries, the keys and the values, resulting in a single type of _relationship between the positions of the sequence_. With multi-head attention, we use _several single-head attentions in parallel_ to obtain diverse relationships between the queries and the keys. Attention projects the sequences with projection matrices and then computes alignment scores; the heads don't depend on each other, so all of this runs in parallel. Each head can thus learn to model a different linguistic interaction useful for downstream tasks, be it syntactic, semantic or generation-based.
#
# As we've seen in class, this can be done simply by reshaping queries, keys and values:
# - project $S$ with $W_Q$, $W_K$ and $W_V$ (each of shape hidden × hidden);
# - split each projection into `num_heads` heads of size $d_h$ = hidden / `num_heads`: head $h$ uses the contiguous columns $h \cdot d_h$ to $(h+1) \cdot d_h - 1$. Reshape B×T×hidden to B×T×heads×$d_h$, then transpose to B×heads×T×$d_h$;
# - compute attention in every head at once, scaling by $\sqrt{d_h}$ (the size of one key is now $d_h$);
# - concatenate the heads back in order (transpose back, then reshape to B×T×hidden);
# - project back the result with $W_O$.

# %% nbgrader={"grade": false, "grade_id": "multi_head_attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=4):
    ### BEGIN SOLUTION
    B, T, _ = S.shape

    def split_heads(X):                                         # (B, T, hidden) -> (B, heads, T, d_h)
        return X.view(B, T, num_heads, -1).transpose(1, 2)

    Q, K, V = split_heads(S @ W_Q), split_heads(S @ W_K), split_heads(S @ W_V)
    scores = Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])   # (B, heads, T, T)
    heads = scores.softmax(dim=-1) @ V                          # (B, heads, T, d_h)
    merged = heads.transpose(1, 2).reshape(B, T, -1)            # (B, T, hidden)
    return merged @ W_O
    ### END SOLUTION


# %%
torch.manual_seed(0)  # the same random inputs for everyone

# Sequence
S = torch.rand((1, 13, 8))

# Projections
W_Q = torch.rand((8, 8))  # Query weights
W_K = torch.rand((8, 8))  # Key weights
W_V = torch.rand((8, 8))  # Value weights
W_O = torch.rand((8, 8))  # Output projection

# Perform multi-head self-attention
attended_values = multi_head_attention(S, W_Q, W_K, W_V, W_O)

print(f"Output Shape: {attended_values.shape}")
print("First position, first 4 values:", attended_values[0, 0, :4])
# Expected: Output Shape: torch.Size([1, 13, 8]) (B, Sequence, Projection); first position, first 4 values about [10.2157, 8.0320, 8.5710, 9.4151]

# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of multi_head_attention.
def _verdict_multi_head_attention(data, num_heads, seed):
    output, asked_data = _answer_and_asked(data)
    args = _multi_head_inputs(seed)
    variants = {m: _ref_attention(*args, num_heads=num_heads, mistake=m)
                for m in ["scale:none", "scale:model", "scale:multiply", "softmax_dim", "split", "merge", "no_W_O"]}
    variants["heads_ignored"] = _ref_attention(*args, num_heads=4 if num_heads != 4 else 1)
    S, W_Q, W_K, W_V, W_O = args
    variants["the output projection is applied transposed (W_Oᵀ instead of W_O)"] = (
        _attend(S @ W_Q, S @ W_K, S @ W_V, num_heads, causal=False) @ W_O.T)
    _expect_values(output, _ref_attention(*args, num_heads=num_heads), variants,
                   behaviour=lambda: describe_heads_weights(asked_data))


def verdict_multi_head_attention_4_heads(output):
    _verdict_multi_head_attention(output, num_heads=4, seed=10)


def verdict_multi_head_attention_2_heads(output):
    _verdict_multi_head_attention(output, num_heads=2, seed=20)


# %% nbgrader={"grade": true, "grade_id": "test_multi_head_attention", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of multi_head_attention: run this cell after your answer (the lines it prints say what was checked)
"""Checks multi_head_attention: output shape, and values on small examples with 4 and with 2 heads (hidden: other inputs)."""
checks = Checks("multi_head_attention", points=10)


def _multi_head_inputs(seed, T=6, hidden=8):
    """S (2, T, hidden), then W_Q, W_K, W_V, W_O (hidden, hidden)."""
    return (seeded_randn(2, T, hidden, seed=seed),) + tuple(seeded_randn(hidden, hidden, seed=seed + i, scale=0.5)
                                                            for i in range(1, 5))


def _public_multi_head_inputs(seed, hidden, T=3, scale=0.5):
    """S (1, T, hidden), then W_Q, W_K, W_V, W_O (hidden, hidden)."""
    return (seeded_randn(1, T, hidden, seed=seed),) + tuple(seeded_randn(hidden, hidden, seed=seed + i, scale=scale)
                                                            for i in range(1, 5))


_HEADS_SPLIT = "the heads are split without a transpose: each head must see every position of its own d_h features: the heads dimension comes before the positions, (B, heads, T, d_h), it is not carved out of them"
_HEADS_MERGED = ("the heads are merged without transposing back: (B, heads, T, d_h) must become (B, T, heads, d_h) "
                 "before the reshape to (B, T, hidden)")
_NOT_SCALED = "the scores are not scaled: divide Q Kᵀ by √d_h, the size of one head's keys"


def _multi_head_asked(inputs, num_heads=4):
    """Your multi_head_attention's output for `inputs`, and what it answers when asked for every head's weights (see
    heads_weights_asked): the second only says what a wrong output is consistent with."""
    return {"output": multi_head_attention(*inputs, num_heads=num_heads),
            "asked": asked(lambda: heads_weights_asked(multi_head_attention))}


def _public_four_heads(data):
    output, asked_data = _answer_and_asked(data)
    expect_numbers(output, [[[2.5926, -3.6161, 2.5692, -1.0526, -0.4287, 1.4506, 0.53121, -1.1111],
                             [1.7763, -0.36643, 0.50097, 0.090402, -2.495, -0.26698, -0.7636, 2.3817],
                             [2.1568, -2.9839, 1.7443, -1.0556, -1.9885, 1.5082, -0.012586, 0.56044]]], mistakes=[
        (_NOT_SCALED, [[[2.6641, -3.7688, 2.6822, -1.139, -0.15198, 1.507, 0.62504, -1.5184],
                        [1.7579, -0.045918, 0.37588, 0.16913, -2.5941, -0.46999, -0.87326, 2.6068],
                        [2.1987, -3.096, 1.8314, -1.1708, -2.0751, 1.6016, -0.032194, 0.62842]]]),
        ("the scores are divided by the square root of the hidden size; divide by √d_h, the size of one head's keys",
         [[[2.3474, -3.2394, 2.1937, -0.79283, -0.86215, 1.295, 0.35548, -0.38712],
           [1.7802, -0.93696, 0.73566, -0.012686, -2.2441, 0.080738, -0.53974, 1.9489],
           [2.06, -2.6652, 1.5472, -0.75123, -1.8402, 1.2314, -0.016466, 0.60208]]]),
        ("the softmax is taken over the wrong dimension: for each query, the weights over the keys (the last dimension) "
         "must sum to 1", [[[2.8613, -4.9789, 2.6601, -0.74569, 0.82734, 1.8555, 1.0563, -2.6365],
                            [1.0554, 0.29296, 0.20432, 0.23007, -1.6659, -0.57664, -0.79651, 2.4815],
                            [1.6492, -0.14395, 0.56028, 0.1054, -4.6232, -0.016208, -1.0312, 4.299]]]),
        (_HEADS_SPLIT, [[[-0.19616, 0.37418, -0.65223, -0.75481, -2.4717, 1.4108, 0.52532, -1.2299],
                         [-2.0594, 4.1839, -3.5986, 2.3239, -2.6042, -1.8048, -0.7999, 2.7026],
                         [0.53879, -1.0597, -0.035577, -0.69327, -0.79723, 1.2595, 0.51834, -1.923]]]),
        (_HEADS_MERGED, [[[-0.28308, 0.49475, -1.8062, 0.62141, -0.67785, -0.2959, -0.37583, -0.26539],
                          [0.82762, 1.0585, -0.77339, 1.3099, -2.0214, -1.5476, -1.171, 3.2975],
                          [-0.98944, 0.49645, -1.8521, 0.98723, -1.2616, 0.85977, 0.85349, -1.4184]]]),
        ("the concatenated heads are not projected back with the output projection (W_O)", [[[0.59868, -1.5967, 0.24256, 1.4521, 0.77522, 1.3067, -0.95005, -2.232],
                                                                                             [0.69772, -0.70817, 0.54542, 0.4028, 0.81915, 1.6911, 0.70488, 0.25057],
                                                                                             [0.71954, -0.8309, 0.62856, 0.60995, 0.56315, 2.0166, -0.82845, -1.9705]]]),
        ("the output projection is applied transposed (W_Oᵀ instead of W_O)", [[[2.7191, -0.89717, -0.17805, 2.0569, 0.035197, -3.6821, -1.7664, -3.1635],
                                                                                [-0.081533, -0.69707, 0.91263, 1.3603, -0.48601, -0.65815, 0.033936, -2.488],
                                                                                [1.3117, -1.4134, 0.13668, 1.4526, -0.52989, -2.6967, -1.0354, -3.6032]]]),
        ("this is single-head attention: the number of heads is not taken from num_heads", [[[3.1981, -3.3885, 3.1191, -1.318, -3.0026, 1.5896, 0.066196, 1.24],
                                                                                             [1.5667, -0.5954, 0.12448, 0.49279, -0.34254, -0.61144, -0.46775, 0.62284],
                                                                                             [1.2602, -0.8512, 0.29275, 0.36925, -1.3538, -0.060656, -0.39389, 1.4808]]]),
    ], what="the output with 4 heads", behaviour=lambda: describe_heads_weights(asked_data))


def _public_two_heads(output):
    expect_numbers(output, [[[0.80693, 0.14442, 0.15033, -0.51946],
                             [0.99921, 0.057453, 0.17522, -0.69676],
                             [0.77707, 0.12467, 0.15651, -0.50889]]], mistakes=[
        ("the number of heads is not taken from num_heads: with num_heads=2 the function uses 4 heads", [[[0.69691, 0.088228, 0.12611, -0.37894],
                                                                                                          [0.86191, 0.049564, 0.26591, -0.60157],
                                                                                                          [0.72574, 0.10192, 0.15029, -0.45695]]]),
        ("the number of heads is not taken from num_heads: with num_heads=2 the function uses a single head",
         [[[0.75621, 0.11336, 0.19665, -0.52896],
           [1.101, 0.040518, 0.17453, -0.76312],
           [0.74487, 0.10035, 0.18705, -0.51574]]]),
        (_NOT_SCALED, [[[0.84473, 0.16226, 0.13776, -0.53101],
                        [1.099, 0.044697, 0.17367, -0.76651],
                        [0.80734, 0.1353, 0.14546, -0.51882]]]),
        (_HEADS_SPLIT, [[[0.77104, 0.027069, 0.2514, -0.68535],
                         [0.81348, 0.10637, 0.08224, -0.60265],
                         [0.93657, 0.12935, 0.022666, -0.62739]]]),
        (_HEADS_MERGED, [[[0.78594, -0.36537, -0.052406, -0.76346],
                          [0.77754, 0.13574, 0.15544, -0.50187],
                          [0.74679, 0.1993, 0.38324, -0.77276]]]),
    ], what="the output with num_heads=2")


checks.check("output shape (B, T, hidden)", 1, lambda: multi_head_attention(*_multi_head_inputs(0)),
             lambda output: expect_tensor(output, (2, 6, 8)))
checks.check("values with 4 heads (the default)", 3,
             lambda: _multi_head_asked(_public_multi_head_inputs(110, hidden=8)), _public_four_heads)
checks.check("values with num_heads=2", 2,
             lambda: multi_head_attention(*_public_multi_head_inputs(120, hidden=4), num_heads=2), _public_two_heads)
### BEGIN HIDDEN TESTS
checks.check("values with 4 heads, other inputs", 2, lambda: _multi_head_asked(_multi_head_inputs(10)),
             "verdict_multi_head_attention_4_heads")
checks.check("values with num_heads=2, other inputs", 2,
             lambda: multi_head_attention(*_multi_head_inputs(20), num_heads=2),
             "verdict_multi_head_attention_2_heads")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# ## Causal mask (10 points)
#
# GPT uses a version of self-attention called causal self-attention. When we train a model for language modeling or machine translation, we feed it the entire training sequence at once, and every position is computed at the same time, in one pass: the model predicts the next token at every position in parallel. What keeps a position from seeing the future is a mask: position $i$ may only attend to positions $j \le i$, and the mask hides everything after it. For instance, take the sentence "Lisbon is a great city to live in". Using strikethrough for what the mask hides, this is what each position sees (all of these rows are computed together, not one after the other):
#
# - Position 0: Lisbon ~~is a great city to live in~~
# - Position 1: Lisbon is ~~a great city to live in~~
# - Position 2: Lisbon is a ~~great city to live in~~
# - Position 3: Lisbon is a great ~~city to live in~~
# - Position 4: Lisbon is a great city ~~to live in~~
# - Position 5: Lisbon is a great city to ~~live in~~
# - Position 6: Lisbon is a great city to live ~~in~~
# - Position 7: Lisbon is a great city to live in (nothing is hidden from the last position)
#
# ![The causal attention mask: each position attends only to itself and to the positions before it](https://paullerner.github.io/aivancity_nlp/_static/attention_mask.png)
#
# Apply the mask to the attention scores using `torch.tril` and `masked_fill`: position $i$ may attend only to positions $j \le i$. Masked scores are set to $-\infty$ *before* the softmax, so that they get a weight of exactly 0. For a sequence of 3 tokens and one head, the scores go from
#
# ```
# bidirectional attention:      causal attention:
# [[ 7.68,  9.88,  7.87],       [[ 7.68,  -inf,  -inf],
#  [11.71, 14.93, 11.97],        [11.71, 14.93,  -inf],
#  [ 8.81, 11.36,  9.05]]        [ 8.81, 11.36,  9.05]]
# ```

# %% nbgrader={"grade": false, "grade_id": "causal_multi_head_attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def causal_multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=4):
    ### BEGIN SOLUTION
    B, T, _ = S.shape

    def split_heads(X):                                         # (B, T, hidden) -> (B, heads, T, d_h)
        return X.view(B, T, num_heads, -1).transpose(1, 2)

    Q, K, V = split_heads(S @ W_Q), split_heads(S @ W_K), split_heads(S @ W_V)
    scores = Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])   # (B, heads, T, T)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=S.device))
    scores = scores.masked_fill(~mask, float("-inf"))           # position i sees positions j <= i
    heads = scores.softmax(dim=-1) @ V                          # (B, heads, T, d_h)
    merged = heads.transpose(1, 2).reshape(B, T, -1)            # (B, T, hidden)
    return merged @ W_O
    ### END SOLUTION


# %% [markdown]
# Two checks you can make yourself: position 0 may only attend to itself, so it gets all of its own value, and its output is `S[0, 0] @ W_V @ W_O`; the last position may attend to every position, so its output is the same as without the mask.

# %%
torch.manual_seed(0)  # the same random inputs for everyone

# Sequence
S = torch.rand((1, 3, 8))

# Projections
W_Q = torch.rand((8, 8))  # Query weights
W_K = torch.rand((8, 8))  # Key weights
W_V = torch.rand((8, 8))  # Value weights
W_O = torch.rand((8, 8))  # Output projection

# Perform causal multi-head self-attention
attended_values = causal_multi_head_attention(S, W_Q, W_K, W_V, W_O)

print(f"Output Shape: {attended_values.shape}")
print("First position, first 4 values:", attended_values[0, 0, :4])
print("Position 0 attends only to itself:", torch.allclose(attended_values[0, 0], S[0, 0] @ W_V @ W_O))
print("The last position is the same as without the mask:",
      torch.allclose(attended_values[0, -1], multi_head_attention(S, W_Q, W_K, W_V, W_O)[0, -1]))
# Expected: Output Shape: torch.Size([1, 3, 8]) (B, Sequence, Projection); first position, first 4 values about [3.5760, 8.1114, 5.2311, 3.9887]; True; True

# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of causal_multi_head_attention.
def _verdict_causal_values(output, num_heads, seed):
    args = _multi_head_inputs(seed)
    mistakes = ["scale:none", "scale:model", "scale:multiply", "softmax_dim", "split", "merge", "no_W_O",
                "mask:none", "mask:triu", "mask:+1", "mask:-1", "mask:zero", "mask:after_softmax"]
    variants = {m: _ref_attention(*args, num_heads=num_heads, causal=True, mistake=m) for m in mistakes}
    variants["heads_ignored"] = _ref_attention(*args, num_heads=4 if num_heads != 4 else 1, causal=True)
    _expect_values(output, _ref_attention(*args, num_heads=num_heads, causal=True), variants)


def verdict_causal_4_heads(output):
    _verdict_causal_values(output, num_heads=4, seed=40)


def verdict_causal_2_heads(output):
    _verdict_causal_values(output, num_heads=2, seed=50)


# %% nbgrader={"grade": true, "grade_id": "test_causal_multi_head_attention", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of causal_multi_head_attention: run this cell after your answer (the lines it prints say what was checked)
"""Checks causal_multi_head_attention: shape, causality, and values on a small example (hidden: other inputs)."""
checks = Checks("causal_multi_head_attention", points=10)


def _public_causal_mha_future():
    S, *W = _multi_head_inputs(35, T=5)
    return {"before": causal_multi_head_attention(S, *W), "after": causal_multi_head_attention(with_last_position_changed(S), *W)}


def _public_causal_mha_no_future(outputs):
    before, after = outputs["before"], outputs["after"]
    expect_tensor(before, (2, 5, 8))
    expect_tensor(after, (2, 5, 8))
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-4, rtol=1e-4), (
        "changing the last token changed the output at earlier positions: a position must not attend to later ones")


def _public_causal_mha_values(output):
    expect_numbers(output, [[[-1.0049, -0.91756, -1.0915, 2.409],
                             [-0.6912, 1.6654, -0.88186, -0.081725],
                             [5.367, -1.0307, 4.9812, 4.4599],
                             [-1.1998, 0.78028, -1.2598, -0.19947]]], mistakes=[
        ("there is no causal mask: each position also attends to later positions", [[[-1.4623, -2.0891, -0.92402, -1.1277],
                                                                                     [-0.73582, -1.2248, 0.36768, -3.1195],
                                                                                     [4.1084, -4.3078, 5.6739, -1.4723],
                                                                                     [-1.1998, 0.78028, -1.2598, -0.19947]]]),
        ("the mask points the wrong way: position i must attend to the positions j ≤ i, not j ≥ i", [[[-1.4623, -2.0891, -0.92402, -1.1277],
                                                                                                      [-1.0224, -2.0204, 0.58128, -4.7414],
                                                                                                      [3.6238, -6.6301, 6.4822, -5.2227],
                                                                                                      [-2.8436, -2.9741, -0.69452, -6.2018]]]),
        ("the mask is off by one: each position can also see the next one", [[[-1.1161, -1.1848, -1.0282, 1.8071],
                                                                              [0.5118, 0.5182, 0.56779, -0.13404],
                                                                              [4.1084, -4.3078, 5.6739, -1.4723],
                                                                              [-1.1998, 0.78028, -1.2598, -0.19947]]]),
        ("masked scores are set to 0 instead of -inf: exp(0) = 1, so future positions still get weight", [[[-1.2013, -2.2683, -0.3754, -1.1808],
                                                                                                           [-0.26265, 0.1393, 0.057862, -1.4814],
                                                                                                           [4.6859, -1.6705, 4.7614, 2.885],
                                                                                                           [-1.1998, 0.78028, -1.2598, -0.19947]]]),
        ("the mask is applied after the softmax, so the weights no longer sum to 1: mask the scores, then take the softmax",
         [[[-1.3668, -1.8678, -0.87838, -0.06123],
           [-0.35317, 0.99741, -0.51545, 0.055321],
           [4.8853, -2.037, 5.0597, 2.1345],
           [-1.1998, 0.78028, -1.2598, -0.19947]]]),
        ("the scores are not scaled: divide Q Kᵀ by √d_h, the size of one head's keys", [[[-1.0049, -0.91756, -1.0915, 2.409],
                                                                                          [-0.70277, 1.7064, -0.86067, -0.30187],
                                                                                          [5.6544, -1.0229, 5.2048, 4.8095],
                                                                                          [-1.1796, 1.2101, -1.4527, 0.48831]]]),
        ("the softmax is taken over the wrong dimension: for each query, the weights over the keys (the last dimension) "
         "must sum to 1", [[[-1.3949, -1.9868, -0.81766, -0.49623],
                            [-0.75961, -0.32137, -0.16255, -2.0957],
                            [5.0571, -2.2045, 5.3104, 2.0834],
                            [-3.3178, -2.0245, -1.5372, -7.2599]]]),
    ], what="the output with num_heads=2")


checks.check("output shape (B, T, hidden)", 1, lambda: causal_multi_head_attention(*_multi_head_inputs(0)),
             lambda output: expect_tensor(output, (2, 6, 8)))
checks.check("a position never sees later positions", 2, _public_causal_mha_future, _public_causal_mha_no_future)
checks.check("values on a small example with num_heads=2", 2,
             lambda: causal_multi_head_attention(*_public_multi_head_inputs(130, hidden=4, T=4, scale=1.0), num_heads=2),
             _public_causal_mha_values)
### BEGIN HIDDEN TESTS
def _probe_causal_future():
    S, *W = _multi_head_inputs(30)
    return {"before": causal_multi_head_attention(S, *W), "after": causal_multi_head_attention(with_last_position_changed(S), *W)}


checks.check("a position never sees later positions (other inputs)", 1, _probe_causal_future, "_expect_causal")
checks.check("values with 4 heads (the default)", 2, lambda: causal_multi_head_attention(*_multi_head_inputs(40)),
             "verdict_causal_4_heads")
checks.check("values with num_heads=2", 2, lambda: causal_multi_head_attention(*_multi_head_inputs(50), num_heads=2),
             "verdict_causal_2_heads")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# We can now look back at the attention figure from the paper. Hopefully, you now understand the right side of the figure too.
#
# ![Figure 2 of the Transformer paper, again: scaled dot-product attention (left) and multi-head attention (right)](https://miro.medium.com/v2/resize:fit:1270/1*LpDpZojgoKTPBBt8wdC4nQ.png)

# %% [markdown]
# ## PyTorch module (10 points)
#
# The last step embeds our function in a PyTorch module. As you may have noticed, in the previous exercises we passed the projection weights to the function as inputs. In a real model, these matrices are learned, and PyTorch can keep track of them for us.
#
# - Complete the missing lines of the module's initialization and of its forward pass. Use learned projections (`nn.Linear`) for the queries, keys, values and output.
# - Add dropout on the attention weights and on the output (`nn.Dropout`: it is active in training mode and off in eval mode).
# - `seq_len` is the longest sequence the module will see: the forward pass must also work for any shorter sequence.
# - A causal mask is not learned, but it belongs to the module: when the module moves to a GPU (`module.to("cuda")`), the mask must move with it, or the forward pass fails with "Expected all tensors to be on the same device". A plain tensor attribute (`self.mask = ...`) stays behind; a *buffer* moves with the parameters: `self.register_buffer("mask", ...)`. (Building the mask in the forward pass, on `x.device`, works too.)

# %% nbgrader={"grade": false, "grade_id": "CausalSelfAttention", "locked": false, "schema_version": 3, "solution": true, "task": false}
class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        ### BEGIN SOLUTION
        assert hidden_size % num_heads == 0, "hidden_size must be a multiple of num_heads"
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.attention_dropout = nn.Dropout(dropout)
        self.output_dropout = nn.Dropout(dropout)
        # mask[i, j] is True where position i may attend to position j (j <= i)
        self.register_buffer("mask", torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool)))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        B, T, C = x.shape

        def split_heads(X):                                     # (B, T, C) -> (B, heads, T, d_h)
            return X.view(B, T, self.num_heads, -1).transpose(1, 2)

        Q, K, V = split_heads(self.query(x)), split_heads(self.key(x)), split_heads(self.value(x))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])          # (B, heads, T, T)
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))
        weights = self.attention_dropout(scores.softmax(dim=-1))
        merged = (weights @ V).transpose(1, 2).reshape(B, T, C)             # (B, T, C)
        return self.output_dropout(self.output(merged))
        ### END SOLUTION


# %%
attention_module = CausalSelfAttention()

# %%
# Sequence
S = torch.rand((1, 3, 8))

# Perform self-attention
attended_values = attention_module(S)

# Expected: Output Shape: torch.Size([1, 3, 8]) (B, Sequence, Projection). No values to compare with here: they depend
# on the random initial weights of your layers, and so on the order in which you create them.
print(f"Output Shape: {attended_values.shape}")


# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of CausalSelfAttention.
def verdict_attention_module_values(data):
    weights = symmetric_weights(16, seed=60)
    _attention_values(data, {"inputs": {"full": seeded_randn(2, 8, 16, seed=62), "shorter": seeded_randn(2, 5, 16, seed=62)},
                             "weights": weights, "num_heads": 4})


# %% nbgrader={"grade": true, "grade_id": "test_CausalSelfAttention", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of CausalSelfAttention: run this cell after your answer (the lines it prints say what was checked)
"""Checks CausalSelfAttention: shapes for every length up to seq_len, its projections, values when they are the identity,
causality, dropout, and that it moves to another device; hidden: values with projections the check sets.

The checks set your module's projections themselves (set_attention_weights, in the helpers), to numbers drawn for
each check, whatever the order in which your module creates them: its outputs can then be compared with the
attention computed from those numbers."""
checks = Checks("CausalSelfAttention", points=10)


def _csa_module(hidden_size=16, num_heads=4, seq_len=8, dropout=0.0, seed=65):
    """Your module, its projections set to symmetric matrices drawn for the check (see set_attention_weights)."""
    torch.manual_seed(drawn(seed))
    module = CausalSelfAttention(hidden_size=hidden_size, num_heads=num_heads, dropout=dropout, seq_len=seq_len)
    weights = symmetric_weights(hidden_size, seed=seed)
    set_attention_weights(module.to(DEVICE), weights, num_heads)
    return module, weights


def _csa_outputs(module, weights, num_heads, **inputs):
    """The module's output for each input, with the inputs and the weights the check set."""
    with torch.no_grad():
        return {"outputs": {key: module(x) for key, x in inputs.items()}, "inputs": inputs, "weights": weights,
                "num_heads": num_heads}


def _public_csa_default_sizes():
    module, weights = _csa_module(hidden_size=8, num_heads=2, seq_len=3, dropout=0.1, seed=0)
    return _csa_outputs(module.eval(), weights, 2, x=seeded_randn(1, 3, 8, seed=0))


def _public_csa_shorter_sequence():
    module, weights = _csa_module(hidden_size=8, num_heads=2, seq_len=6, seed=1)
    try:
        return _csa_outputs(module.eval(), weights, 2, x=seeded_randn(2, 4, 8, seed=1))
    except RuntimeError as error:
        raise AssertionError(f"the module fails on 4 tokens with seq_len=6 ({error}): "
                             "if you store a seq_len × seq_len mask, slice it to the input's length T") from None


def _public_csa_projection_sizes():
    module = CausalSelfAttention(hidden_size=8, num_heads=2, dropout=0.0, seq_len=4)
    shapes = [list(p.shape) for p in module.parameters() if p.requires_grad]  # what is learned (not a frozen mask)
    module, weights = _csa_module(hidden_size=8, num_heads=2, seq_len=4, seed=2)
    return {"shapes": shapes, **_csa_outputs(module.eval(), weights, 2, x=seeded_randn(1, 4, 8, seed=3))}


def _public_csa_four_projections(shapes):
    weights = sum(math.prod(shape) for shape in shapes if len(shape) >= 2 and math.prod(shape) != 8)  # no bias
    assert weights != 3 * 8 * 8, ("the module learns three hidden × hidden projections: "
                                  "is the output projection (W_O) missing?")
    assert weights == 4 * 8 * 8, (f"with hidden_size=8, expected the weights of four learned 8 × 8 projections "
                                  f"(query, key, value, output: {4 * 8 * 8} numbers), found {weights}")


def _public_csa_identity_output():
    """The module's output when its query, key, value and output projections are all the identity (and biases 0)."""
    module = CausalSelfAttention(hidden_size=8, num_heads=2, dropout=0.0, seq_len=3).to(DEVICE).eval()
    set_attention_weights(module, [torch.eye(8, device=DEVICE)] * 4, num_heads=2)  # whatever its layout (see there)
    with torch.no_grad():
        return module(seeded_randn(1, 3, 8, seed=140))


def _public_csa_identity_values(output):
    expect_numbers(output, [[[-1.1161, -1.2184, 1.6459, 1.8962, -0.34892, 2.2558, -1.5102, 0.57888],
                             [-0.48908, -1.1091, 0.66957, 1.3836, 0.10074, 1.7218, -0.76482, 0.46136],
                             [0.1651, -0.88099, 0.8138, 1.1587, 0.90274, -0.052778, -0.38372, 1.1066]]], mistakes=[
        ("there is no causal mask: each position also attends to later positions", [[[-1.0144, -1.1932, 1.563, 1.8332, -0.27324, 2.1494, -1.4038, 0.57626],
                                                                                     [-0.084748, -0.97519, 0.68649, 1.2253, 0.30137, 1.2662, -0.68295, 0.63492],
                                                                                     [0.1651, -0.88099, 0.8138, 1.1587, 0.90274, -0.052778, -0.38372, 1.1066]]]),
        ("the mask points the wrong way: position i must attend to the positions j ≤ i, not j ≥ i", [[[-1.0144, -1.1932, 1.563, 1.8332, -0.27324, 2.1494, -1.4038, 0.57626],
                                                                                                      [0.56354, -0.82234, 0.083479, 0.80365, 0.82205, 0.47379, -0.02057, 0.6798],
                                                                                                      [1.1147, -0.57798, 0.7367, 0.75578, 1.124, -0.60198, -0.34727, 1.3466]]]),
        ("masked scores are set to 0 instead of -inf: exp(0) = 1, so future positions still get weight", [[[-1.0785, -1.2091, 1.6146, 1.8727, -0.30129, 2.178, -1.4558, 0.58857],
                                                                                                           [-0.23151, -1.0238, 0.68035, 1.2828, 0.26609, 1.3463, -0.69735, 0.6044],
                                                                                                           [0.1651, -0.88099, 0.8138, 1.1587, 0.90274, -0.052778, -0.38372, 1.1066]]]),
        ("the mask is applied after the softmax, so the weights no longer sum to 1: mask the scores, then take the softmax",
         [[[-1.0522, -1.1486, 1.5516, 1.7877, -0.32508, 2.1017, -1.4071, 0.53934],
           [-0.36578, -0.82948, 0.50077, 1.0348, 0.08099, 1.3842, -0.61486, 0.37091],
           [0.1651, -0.88099, 0.8138, 1.1587, 0.90274, -0.052778, -0.38372, 1.1066]]]),
        ("the scores are not scaled: divide Q Kᵀ by √d_h, the size of one head's keys", [[[-1.1161, -1.2184, 1.6459, 1.8962, -0.34892, 2.2558, -1.5102, 0.57888],
                                                                                          [-0.50985, -1.1127, 0.7019, 1.4006, 0.048508, 1.7838, -0.8514, 0.47501],
                                                                                          [0.30026, -0.82919, 0.89121, 1.1249, 1.0788, -0.48186, -0.34555, 1.2893]]]),
        ("the scores are divided by the square root of the hidden size; divide by √d_h, the size of one head's keys",
         [[[-1.1161, -1.2184, 1.6459, 1.8962, -0.34892, 2.2558, -1.5102, 0.57888],
           [-0.48299, -1.108, 0.66009, 1.3786, 0.11632, 1.7033, -0.73899, 0.45729],
           [0.13001, -0.89591, 0.77872, 1.1634, 0.79835, 0.19089, -0.41869, 1.0094]]]),
        ("the softmax is taken over the wrong dimension: for each query, the weights over the keys (the last dimension) "
         "must sum to 1", [[[-1.0522, -1.1486, 1.5516, 1.7877, -0.32508, 2.1017, -1.4071, 0.53934],
                            [0.074873, -0.61886, -0.1733, 0.54599, 0.40657, 0.80682, 0.021364, 0.23531],
                            [1.1556, -1.0214, 0.63271, 1.1554, 1.3509, -0.19385, -0.31408, 1.4667]]]),
        ("the heads are split without a transpose: each head must see every position of its own d_h features: the heads dimension comes before the positions, (B, heads, T, d_h), it is not carved out of them",
         [[[-1.1161, -1.2184, 1.6459, 1.8962, 0.65725, 1.0609, 0.15772, 0.31593],
           [-0.35126, 2.2452, -1.5006, 0.58291, 1.0012, -0.17117, 0.59298, 0.6466],
           [-0.4761, -0.79736, 0.46763, 1.3091, 1.0646, -0.3932, 0.051805, 1.0376]]]),
        ("the heads are merged without transposing back: (B, heads, T, d_h) must become (B, T, heads, d_h) "
         "before the reshape to (B, T, hidden)", [[[-1.1161, -1.2184, 1.6459, 1.8962, -0.48908, -1.1091, 0.66957, 1.3836],
                                                   [0.1651, -0.88099, 0.8138, 1.1587, -0.34892, 2.2558, -1.5102, 0.57888],
                                                   [0.10074, 1.7218, -0.76482, 0.46136, 0.90274, -0.052778, -0.38372, 1.1066]]]),
    ], what="the output when every projection is the identity (hidden_size=8, num_heads=2)")


def _public_csa_future():
    (module, weights), x = _csa_module(seed=65), seeded_randn(2, 8, 16, seed=66)
    return _csa_outputs(module.eval(), weights, 4, before=x, after=with_last_position_changed(x))


def _public_csa_no_future(data):
    before, after = data["outputs"]["before"], data["outputs"]["after"]
    expect_tensor(before, (2, 8, 16))
    expect_tensor(after, (2, 8, 16))
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-4, rtol=1e-4), (
        "changing the last token changed the output at earlier positions: a position must not attend to later ones")


def _public_csa_twice_in_eval():
    (module, weights), x = _csa_module(dropout=0.5, seed=65), seeded_randn(2, 8, 16, seed=67)
    return _csa_outputs(module.eval(), weights, 4, first=x, second=x)


def _public_csa_same_in_eval(data):
    expect_same_in_eval(data["outputs"], (2, 8, 16))


def _one_token_dropout(trained, x, weights, num_heads, p=0.5):
    """How an attention module's output in training mode, for sequences of one token x (B, 1, hidden), is made of
    values the check can compute: with one token, each head has one attention weight (1), so dropout on the weights
    keeps each head's output (× 1/(1-p)) or drops it whole; dropout on the output then zeroes each value or keeps it
    (× 1/(1-p)). Tries the value and output projections the check set (in any order, or no output projection) and
    heads of any size. Returns {"heads": the factor of each head's output, (B, heads), 1 when the weights have no
    dropout; "output": whether the output has dropout; "zeroed": the share of the output's values zeroed by its
    dropout}."""
    import itertools

    B, _, hidden = x.shape
    expect_tensor(trained, x.shape, "the output in training mode")
    out = trained.detach().double().cpu().reshape(B, hidden)
    assert torch.isfinite(out).all(), "the output in training mode contains inf or NaN"
    x = x.detach().double().cpu().reshape(B, hidden)
    kept = 1 / (1 - p)
    alive = out.abs().sum(-1) > 0  # a row whose heads were all dropped is 0 whatever the output's dropout
    likely = bool(alive.any()) and (out[alive] == 0).double().mean().item() > 0.1  # output dropout: tried first
    projections = [(v.double().cpu(), o.double().cpu()) for v, o in itertools.permutations(weights, 2)]
    projections += [(v.double().cpu(), torch.eye(hidden, dtype=torch.float64)) for v in weights]
    tolerance = dict(rtol=1e-4, atol=1e-4)
    for output_dropout in sorted((False, True), key=lambda d: d != likely):
        for heads in sorted({num_heads} | {h for h in (1, 2, 4, 8) if hidden % h == 0}, key=lambda h: h != num_heads):
            factors = torch.tensor([(1.0,) * heads] + list(itertools.product((0.0, kept), repeat=heads)),
                                   dtype=torch.float64)  # (C, heads)
            for v, o in projections:
                values = (x @ v).view(B, heads, hidden // heads)  # (B, heads, d_h): one token, weight 1
                y = (factors[:, None, :, None] * values).reshape(len(factors), B, hidden) @ o  # (C, B, hidden)
                if output_dropout:
                    fits = ((out == 0) | torch.isclose(out, kept * y, **tolerance)).all(-1)  # (C, B)
                else:
                    fits = torch.isclose(out, y, **tolerance).all(-1)
                if fits[0].all():  # every row without dropout on the weights
                    chosen = torch.zeros(B, dtype=torch.long)
                elif fits[1:].any(0).all():  # every row with each head kept or dropped: the likeliest way (the
                    # fewest values left to the output's dropout: a head whose values were all zeroed was dropped)
                    made = (y[1:] != 0).sum(-1).masked_fill(~fits[1:], hidden + 1)  # (C - 1, B)
                    chosen = made.argmin(0) + 1
                else:
                    continue
                made = y[chosen, torch.arange(B)]  # (B, hidden): before the output's dropout
                zeroed = (out == 0)[made != 0].double().mean().item() if output_dropout else 0.0
                return {"heads": factors[chosen], "output": output_dropout, "zeroed": zeroed}
    raise AssertionError(
        f"in training mode, the output for sequences of one token should be attention computed with the projections "
        f"the check set, with dropout {p}: on the attention weights (with one token, each head's output is kept, "
        f"× {kept:g}, or dropped), then on the output (each value zeroed, or × {kept:g}). It is not: if a check of "
        "the values above failed, fix that first")


def _expect_weights_dropout(trained, x, weights, num_heads, p=0.5):
    found = _one_token_dropout(trained, x, weights, num_heads, p)
    if (found["heads"] == 1).all():
        raise AssertionError(
            f"with dropout={p} in training mode, only the output's dropout changes it: add dropout on the attention "
            "weights too" if found["output"] else
            f"no dropout in training mode: with dropout={p} the output is the same as in eval mode; add dropout on the "
            "attention weights and on the output")
    share = (found["heads"] == 0).double().mean().item()
    assert (found["heads"] != 1).all() and 0.3 <= share <= 0.7, (
        f"with dropout={p} in training mode, about {p:.0%} of the attention weights should be dropped; {share:.0%} "
        "were: apply the module's dropout to the attention weights, after the softmax")


def _expect_output_dropout(trained, x, weights, num_heads, p=0.5):
    found = _one_token_dropout(trained, x, weights, num_heads, p)
    assert found["output"] and 0.3 <= found["zeroed"] <= 0.7, (
        f"with dropout={p} in training mode, about {p:.0%} of the outputs should be zeroed "
        f"({found['zeroed']:.0%} were): add dropout on the output, after the output projection")


def _public_csa_train_one_token():
    """The module in training mode (dropout 0.5), its projections set by the check, on 64 sequences of one token:
    one attention weight per head, so that the output is made of values the check can compute (_one_token_dropout)."""
    (module, weights), x = _csa_module(seq_len=1, dropout=0.5, seed=68), seeded_randn(64, 1, 16, seed=68)
    with torch.no_grad():
        return {"trained": module.train()(x), "x": x, "weights": weights, "num_heads": 4}


def _public_csa_weights_dropout(data):
    _expect_weights_dropout(data["trained"], data["x"], data["weights"], data["num_heads"])


def _public_csa_output_dropout(data):
    _expect_output_dropout(data["trained"], data["x"], data["weights"], data["num_heads"])


def _public_csa_on_another_device():
    """Moves the module to the "meta" device (shapes without data): what it keeps must move with it, as to a GPU.
    Then the output of the module on this device, with projections set by the check."""
    module = CausalSelfAttention(hidden_size=8, num_heads=2, dropout=0.0, seq_len=3).to("meta").eval()
    try:
        output = module(torch.empty(1, 3, 8, device="meta"))
    except RuntimeError as error:
        raise AssertionError(
            f"after module.to(another device), the forward pass fails ({str(error)[:200]}): a tensor the module keeps "
            "(the mask?) stayed on the CPU; make it a buffer of the module so that it moves with it, "
            "or create it on the input's device") from None
    module, weights = _csa_module(hidden_size=8, num_heads=2, seq_len=3, seed=4)
    return {"shape": list(output.shape), "device": str(output.device),
            **_csa_outputs(module.eval(), weights, 2, x=seeded_randn(1, 3, 8, seed=5))}


def _public_csa_moved(data):
    assert data["shape"] == [1, 3, 8], f"on another device, the output should have shape (1, 3, 8), not {tuple(data['shape'])}"


# While graded, a check's points need your module's outputs on inputs drawn then to be attention computed with the
# projections the check set: the right one, or one with a known mistake (compare="_attention_computed": the value
# checks judge which), or the right one for the values (compare="_attention_values"). In training mode, on sequences
# of one token: that attention, with each head's output kept or dropped and each output value zeroed or kept
# (compare="_attention_weights_dropout" and "_attention_output_dropout").
checks.check("output shape with the default sizes", 1, _public_csa_default_sizes,
             lambda data: expect_tensor(data["outputs"]["x"], (1, 3, 8)), compare="_attention_computed")
checks.check("works for a sequence shorter than seq_len", 1, _public_csa_shorter_sequence,
             lambda data: expect_tensor(data["outputs"]["x"], (2, 4, 8)), compare="_attention_computed")
checks.check("learned query, key, value and output projections", 1, _public_csa_projection_sizes,
             lambda data: _public_csa_four_projections(data["shapes"]), compare="_attention_computed")
checks.check("values when every projection is the identity", 1, _public_csa_identity_output, _public_csa_identity_values)
checks.check("a position never sees later positions", 1, _public_csa_future, _public_csa_no_future,
             compare="_attention_causal")
checks.check("dropout is off in eval mode", 1, _public_csa_twice_in_eval, _public_csa_same_in_eval,
             compare="_attention_computed")
checks.check("dropout on the attention weights", 1, _public_csa_train_one_token, _public_csa_weights_dropout,
             compare="_attention_weights_dropout")
checks.check("dropout on the output", 1, _public_csa_train_one_token, _public_csa_output_dropout,
             compare="_attention_output_dropout")
checks.check("the module moves to another device (GPU) with everything it keeps", 1, _public_csa_on_another_device,
             _public_csa_moved, compare="_attention_computed")
### BEGIN HIDDEN TESTS
def _probe_module_values():
    module, weights = _csa_module(seed=60)
    module.eval()
    data = _csa_outputs(module, weights, 4, full=seeded_randn(2, 8, 16, seed=62))
    x = seeded_randn(2, 5, 16, seed=62)
    data["inputs"]["shorter"] = x
    try:
        data["outputs"]["shorter"] = _csa_outputs(module, weights, 4, x=x)["outputs"]["x"]
    except RuntimeError:  # failing for T < seq_len is the shorter-sequence check's mistake, not this one's
        data["outputs"]["shorter"] = None
    return data


checks.check("values match causal multi-head attention, with projections set by the check", 1, _probe_module_values,
             "verdict_attention_module_values", compare="_attention_values")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# # Transformer
#
# ![A decoder-only Transformer: embeddings, a stack of blocks (masked multi-head attention and a feed-forward network, with residual connections and layer norms), then an output layer over the vocabulary](https://paullerner.github.io/aivancity_nlp/_static/transformer_decoder.png)
#
# ## Attention is almost all you need: feedforward neural network (5 points)
#
# A simple neural network of two layers with a ReLU activation in between, and dropout on the output. The intermediate dimension is 4 times `hidden_size`.

# %% nbgrader={"grade": false, "grade_id": "FeedForward", "locked": false, "schema_version": 3, "solution": true, "task": false}
class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        ### BEGIN SOLUTION
        self.up = nn.Linear(hidden_size, 4 * hidden_size)
        self.down = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.dropout(self.down(F.relu(self.up(x))))
        ### END SOLUTION


# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of FeedForward.
def verdict_feed_forward_values(data):
    x, A = seeded_randn(2, 5, 16, seed=71), seeded_randn(64, 16, seed=70, scale=0.3)
    mistake = _ff_match(data["outputs"]["x"], x, A)
    if mistake is not None:
        raise AssertionError(f"wrong output: {mistake}")


# %% nbgrader={"grade": true, "grade_id": "test_FeedForward", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# @title Checks of FeedForward: run this cell after your answer (the lines it prints say what was checked)
"""Checks FeedForward: shape, width and activation (on given weights), dropout; hidden: values on other weights.

The checks set your module's weights themselves (set_feed_forward_weights, in the helpers), to numbers drawn for each
check: the way up to A, the way back to Aᵀ, no biases, whether you use nn.Linear layers or matrices."""
checks = Checks("FeedForward", points=5)


def _ff_outputs(hidden_size, dropout, seed, train=False, **inputs):
    """Your module's output for each input, its weights set to A (4·hidden, hidden) drawn for the check; with A and
    the inputs."""
    torch.manual_seed(drawn(seed))
    module = FeedForward(hidden_size, dropout).to(DEVICE)
    shapes = [list(p.shape) for p in module.parameters()]
    if not any(shape in ([4 * hidden_size, hidden_size], [hidden_size, 4 * hidden_size]) for shape in shapes):
        raise AssertionError(f"with hidden_size={hidden_size}, expected a layer from hidden_size to 4 * hidden_size = "
                             f"{4 * hidden_size} and one back; found weights of shapes {[tuple(s) for s in shapes]}")
    A = seeded_randn(4 * hidden_size, hidden_size, seed=seed, scale=1.0 if hidden_size == 2 else 0.3)
    set_feed_forward_weights(module, A)
    module.train(train)
    with torch.no_grad():
        return {"outputs": {key: module(x) for key, x in inputs.items()}, "inputs": inputs, "A": A, "shapes": shapes}


def _public_ff_output_with_given_weights():
    """FeedForward(2, 0.0) whose hidden → 4·hidden weight is the (8, 2) matrix A and whose way back is Aᵀ, no biases."""
    return _ff_outputs(2, 0.0, 150, x=seeded_randn(1, 3, 2, seed=151))


def _public_ff_values(data):
    expect_numbers(data["outputs"]["x"], [[[-2.5356, -1.7379],
                                     [-0.1217, 0.4278],
                                     [-10.65, -7.8401]]], mistakes=[
        ("there is no activation between the two layers: add a ReLU", [[[-2.6938, -2.0632],
                                                                        [0.007449, 0.92005],
                                                                        [-11.31, -9.7874]]]),
        ("the activation should be a ReLU", [[[-2.0211, -1.3911],
                                              [-0.010761, 0.46644],
                                              [-10.627, -7.8134]]]),
        ("the ReLU is applied after the second layer: it goes between the two layers", [[[0.0, 0.0],
                                                                                         [0.007449, 0.92005],
                                                                                         [0.0, 0.0]]]),
        ("there is a ReLU after the second layer too: only between the two layers", [[[0.0, 0.0],
                                                                                      [0.0, 0.4278],
                                                                                      [0.0, 0.0]]]),
    ], what="the output with given weights (hidden_size=2)")


def _public_ff_twice_in_eval():
    x = seeded_randn(2, 5, 16, seed=152)
    return _ff_outputs(16, 0.5, 154, first=x, second=x)


def _public_ff_same_in_eval(data):
    expect_same_in_eval(data["outputs"], (2, 5, 16))


def _public_ff_train_and_eval():
    """The same module, with the same weights, in training mode then in eval mode."""
    torch.manual_seed(drawn(155))
    module = FeedForward(16, 0.5).to(DEVICE)
    A, x = seeded_randn(64, 16, seed=155, scale=0.3), seeded_randn(4, 8, 16, seed=153)
    set_feed_forward_weights(module, A)
    with torch.no_grad():
        outputs = {"trained": module.train()(x)}
        if not drawn_run():  # see drawn_run: while graded, the grader computes the eval-mode output itself
            outputs["evaluated"] = module.eval()(x)
    return {"outputs": outputs, "inputs": {"trained": x}, "A": A}


def _public_ff_output_dropout(data):
    output = data["outputs"]["trained"]
    expect_tensor(output, (4, 8, 16))
    assert (output == 0).float().mean() > 0.2, (
        "with dropout 0.5 in training mode, about half of the outputs should be zeroed: add dropout on the output")


# While graded, a check's points need your module's outputs on inputs drawn then to be computed with the weights the
# check set: right, or with a known mistake that the value checks judge (compare="_ff_computed"); in training mode,
# the eval-mode output with each value zeroed or doubled (compare="_ff_output_dropout").
checks.check("output shape", 1, lambda: _ff_outputs(8, 0.1, 156, x=seeded_randn(2, 3, 8, seed=0)),
             lambda data: expect_tensor(data["outputs"]["x"], (2, 3, 8)), compare="_ff_computed")
checks.check("two layers (hidden → 4 × hidden → hidden) with a ReLU in between, on given weights", 1,
             _public_ff_output_with_given_weights, _public_ff_values, compare="_ff_values")
checks.check("dropout is off in eval mode", 1, _public_ff_twice_in_eval, _public_ff_same_in_eval, compare="_ff_computed")
checks.check("dropout on the output in training mode", 1, _public_ff_train_and_eval, _public_ff_output_dropout,
             compare="_ff_output_dropout")
### BEGIN HIDDEN TESTS
checks.check("two layers (hidden → 4 × hidden → hidden) with a ReLU in between", 1,
             lambda: _ff_outputs(16, 0.0, 70, x=seeded_randn(2, 5, 16, seed=71)), "verdict_feed_forward_values",
             compare="_ff_values")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# ## Transformer block (10 points)
#
# - stack `CausalSelfAttention` and `FeedForward`;
# - add residual connections;
# - add layer norms (`nn.LayerNorm`). Applying them before each sub-layer (pre-norm, as in GPT-2) or after each residual connection (post-norm, as in the original Transformer) are both fine.

# %% nbgrader={"grade": false, "grade_id": "Block", "locked": false, "schema_version": 3, "solution": true, "task": false}
class Block(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        ### BEGIN SOLUTION
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attention = CausalSelfAttention(hidden_size, num_heads, dropout, seq_len)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.feed_forward = FeedForward(hidden_size, dropout)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        x = x + self.attention(self.norm1(x))      # pre-norm, as in GPT-2
        return x + self.feed_forward(self.norm2(x))
        ### END SOLUTION


# %%
# Sequence
S = torch.rand((1, 3, 8))

block = Block()
# Apply the block
output = block(S)

# Expected: Output Shape: torch.Size([1, 3, 8]) (B, Sequence, Projection). No values to compare with here: they depend
# on the random initial weights of your layers, and so on the order in which you create them.
print(f"Output Shape: {output.shape}")


# %% tags=["grader-only"]
# Grader-only: the verdict of the values of Block, computed with the stand-ins its probe built it on.
def verdict_block_values(data):
    assert len(data["attention"]) == 1 and len(data["feed_forward"]) == 1, (
        "a Block should contain one CausalSelfAttention and one FeedForward (create them in __init__)")
    attend, ff = _BlockAttention(16, 4, 0.0, 8), _BlockFeedForward(16, 0.0)
    attend.load_state_dict(data["attention"][0])
    ff.load_state_dict(data["feed_forward"][0])
    attend, ff = attend.to(DEVICE).eval(), ff.to(DEVICE).eval()
    x, output = seeded_randn(2, 6, 16, seed=81), data["outputs"]["x"]

    def norm(h):
        return F.layer_norm(h, h.shape[-1:])

    with torch.no_grad():
        h = x + attend(norm(x))
        pre_norm = h + ff(norm(h))
        h = norm(x + attend(x))
        post_norm = norm(h + ff(h))
        if _close(output, post_norm):
            return
        no_residual = "the residual connections are missing: add the input of each sub-layer to its output"
        no_ff_residual = "the feed-forward has no residual connection: add its input to its output"
        no_attention_residual = "the attention has no residual connection: add its input to its output"
        variants = [
            (no_residual, ff(norm(attend(norm(x))))),
            (no_residual, norm(ff(norm(attend(x))))),
            (no_ff_residual, ff(norm(x + attend(norm(x))))),
            (no_ff_residual, norm(ff(norm(x + attend(x))))),
            (no_attention_residual, attend(norm(x)) + ff(norm(attend(norm(x))))),
            (no_attention_residual, norm(norm(attend(x)) + ff(norm(attend(x))))),
            ("the layer norms are missing: normalize before each sub-layer (pre-norm) or after each residual (post-norm)",
             (x + attend(x)) + ff(x + attend(x))),
        ]
    _expect_values(output, pre_norm, variants, what="output (expected pre-norm or post-norm)")


def verdict_block_shorter(data):
    expect_tensor(data["outputs"]["x"], (2, 5, 16), "the output for 5 tokens (seq_len=8)")


def verdict_block_causal(data):
    _expect_causal(data["outputs"])


def verdict_block_eval(data):
    _expect_same_in_eval(data["outputs"])


def _block_on_stand_ins(data, reference):
    """compare: each output is a pre-norm or post-norm Block on the stand-in sub-layers whose weights the check set
    (the grader's own copies, loaded with those weights), for the inputs of the grader's run; causality holds when
    the probe changed the last position."""
    attend, ff = _BlockAttention(16, 4, 0.0, 8), _BlockFeedForward(16, 0.0)
    attend.load_state_dict(reference["attention"][0])
    ff.load_state_dict(reference["feed_forward"][0])
    attend, ff = attend.to(DEVICE).eval(), ff.to(DEVICE).eval()
    for key, x in reference["inputs"].items():
        _block_match({"output": data["outputs"][key]}, x, attend, ff, f"the output ({key})")
    if "before" in reference["inputs"]:
        _expect_causal(data["outputs"])


def _public_block_on_stand_ins(data, reference):
    """compare: the output (and the inputs of the sub-layers, when the probe kept them) of a pre-norm or post-norm
    Block on the public stand-in sub-layers (the grader's own copies), for the grader's input."""
    sublayers = {"zero": (torch.zeros_like, torch.zeros_like),
                 "public": (_PublicAttention().forward, _PublicFeedForward().forward)}[reference["sublayers"]]
    kept = {k: data[k] for k in ("output", "attention", "feed_forward") if k in reference}
    if reference["sublayers"] == "zero" and any(_close(kept["output"], F.layer_norm(reference["x"], reference["x"].shape[-1:], eps=eps))
                                                for eps in NORM_EPSILONS):
        return  # the normalized input, normalized once: the residual connections this check is about are there
    _block_match(kept, reference["x"], *sublayers, "the output")


# %% nbgrader={"grade": true, "grade_id": "test_Block", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of Block: run this cell after your answer (the lines it prints say what was checked)
"""Checks Block with stand-in attention and feed-forward modules: shapes, causality, residuals and layer norms."""
checks = Checks("Block", points=10)


_OTHER_BLOCK_SIZES = {"hidden_size": 12, "num_heads": 3, "seq_len": 5}


def _public_block_output():
    """The output of a Block with the default sizes, and of one with other sizes, with the sizes it gave the sub-layers
    it built (recorded by the stand-ins)."""
    built = {}

    class Attention(StandInAttention):
        def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
            super().__init__(hidden_size, num_heads, dropout, seq_len)
            built["CausalSelfAttention"] = {"hidden_size": hidden_size, "num_heads": num_heads, "seq_len": seq_len}

    class Feed(StandInFeedForward):
        def __init__(self, hidden_size, dropout):
            super().__init__(hidden_size, dropout)
            built["FeedForward"] = {"hidden_size": hidden_size}

    with replaced(CausalSelfAttention=StandInAttention, FeedForward=StandInFeedForward):  # see `replaced`
        default = Block()(seeded_randn(1, 3, 8, seed=0))
    with replaced(CausalSelfAttention=Attention, FeedForward=Feed):
        other = Block(dropout=0.0, **_OTHER_BLOCK_SIZES)
    built = dict(built)  # what the constructor built, before the forward pass
    try:
        other_output = other(seeded_randn(2, 5, 12, seed=1))
    except RuntimeError as error:
        other_output = f"{type(error).__name__}: {error}"[:300]
    return {"default": default, "built": built, "other": other_output}


def _public_block_shapes(data):
    expect_tensor(data["default"], (1, 3, 8), "the output with the default sizes")
    for sublayer, sizes in data["built"].items():
        wrong = {k: v for k, v in sizes.items() if v != _OTHER_BLOCK_SIZES[k]}
        assert not wrong, (
            f"Block(hidden_size=12, num_heads=3, seq_len=5) built its {sublayer} with "
            f"{', '.join(f'{k}={v}' for k, v in wrong.items())}: give the sub-layers the block's own sizes "
            "(hidden_size, num_heads, dropout, seq_len), not their defaults")
    assert not isinstance(data["other"], str), (
        f"Block(hidden_size=12, num_heads=3, seq_len=5) fails on an input of 12 features ({data['other']}): "
        "every layer of the block should use the block's own sizes")
    expect_tensor(data["other"], (2, 5, 12), "the output of Block(hidden_size=12, num_heads=3, seq_len=5)")


checks.check("output shape, with the default sizes and with others", 1, _public_block_output, _public_block_shapes,
             vouched_by="output values with stand-in sub-layers")  # its stand-ins' weights are random: no reference


class _ZeroSublayer(nn.Module):
    """A stand-in for CausalSelfAttention and FeedForward whose output is always 0."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return torch.zeros_like(x)


class _PublicAttention(nn.Module):
    """A stand-in for CausalSelfAttention, without weights: each position averages the positions up to it
    (its features rotated by one). It keeps its last input, for the check of the layer norms."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.last_input = None

    def forward(self, x):
        self.last_input = x
        positions = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        return (x.cumsum(dim=1) / positions).roll(1, dims=-1)


class _PublicFeedForward(nn.Module):
    """A stand-in for FeedForward, without weights. It keeps its last input, for the check of the layer norms."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.last_input = None

    def forward(self, x):
        self.last_input = x
        return torch.tanh(2 * x).flip(-1)


def _public_block(attention, feed_forward):
    with replaced(CausalSelfAttention=attention, FeedForward=feed_forward):
        return Block(hidden_size=4, num_heads=2, dropout=0.0, seq_len=4).to(DEVICE).eval()


def _one_of(value, alternatives, mistakes=(), what="the output"):
    """Passes when `value` holds the numbers of one of the alternatives; otherwise fails as expect_numbers does."""
    for numbers in alternatives[1:]:
        try:
            return expect_numbers(value, numbers, what=what)
        except AssertionError:
            pass
    expect_numbers(value, alternatives[0], mistakes, what)


def _public_block_zero_sublayers():
    x = seeded_randn(1, 2, 4, seed=2, scale=2.0)  # [[[0.7846, -0.4471, -0.639, -2.4101], [2.0889, -1.2665, 1.1462, 1.0819]]]
    with torch.no_grad():
        return {"output": _public_block(_ZeroSublayer, _ZeroSublayer)(x), "x": x, "sublayers": "zero"}


def _public_block_identity(data):
    _one_of(data["output"], [[[[0.7846, -0.4471, -0.639, -2.4101], [2.0889, -1.2665, 1.1462, 1.0819]]],   # pre-norm: the input
                     [[[1.2834, 0.2025, 0.0341, -1.5201], [1.0718, -1.6397, 0.31, 0.258]]]],      # post-norm: normalized
            mistakes=[("a residual connection is missing: with sub-layers that return 0, a Block should return its "
                       "input (pre-norm), or its normalized input (post-norm), not 0",
                       [[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])],
            what="the output when the attention and the feed-forward both return 0 (expected: the input, or the "
                 "normalized input in post-norm)")


def _public_block_sublayer_inputs():
    block, x = _public_block(_PublicAttention, _PublicFeedForward), seeded_randn(1, 3, 4, seed=3, scale=3.0) + 1.0
    with torch.no_grad():
        output = block(x)
    attention = [m for m in block.modules() if isinstance(m, _PublicAttention)]
    feed_forward = [m for m in block.modules() if isinstance(m, _PublicFeedForward)]
    assert len(attention) == 1 and len(feed_forward) == 1, (
        "a Block should contain one CausalSelfAttention and one FeedForward (create them in __init__)")
    return {"output": output, "attention": attention[0].last_input, "feed_forward": feed_forward[0].last_input,
            "x": x, "sublayers": "public"}


def _normalized(h):
    """Whether each position of `h` has mean 0 and variance 1 over its features, as after nn.LayerNorm."""
    return (isinstance(h, torch.Tensor) and h.dim() == 3 and bool(h.mean(-1).abs().max() < 1e-3)
            and bool((h.var(-1, unbiased=False) - 1).abs().max() < 2e-2))


def _public_block_layer_norms(data):
    assert any(_normalized(data[k]) for k in ("attention", "feed_forward", "output")), (
        "the layer norms are missing: normalize the input of each sub-layer (pre-norm) or the output of each residual "
        "connection (post-norm)")
    assert _normalized(data["feed_forward"]), (
        "the input of the feed-forward is not normalized: a layer norm is missing before it (pre-norm), "
        "or after the attention's residual connection (post-norm)")
    assert _normalized(data["attention"]) or _normalized(data["output"]), (
        "neither the input of the attention (pre-norm) nor the output of the block (post-norm) is normalized: "
        "a layer norm is missing")


def _public_block_values():
    x = seeded_randn(1, 2, 4, seed=4)
    with torch.no_grad():
        return {"output": _public_block(_PublicAttention, _PublicFeedForward)(x), "x": x, "sublayers": "public"}


def _public_block_expected_values(data):
    output = data["output"]
    no_residual = "the residual connections are missing: add the input of each sub-layer to its output"
    no_ff_residual = "the feed-forward has no residual connection: add its input to its output"
    no_attention_residual = "the attention has no residual connection: add its input to its output"
    _one_of(output, [[[[-0.3357, -0.2786, 1.1366, 1.1921], [2.5738, -1.5914, -2.485, 1.8368]]],   # pre-norm
                     [[[0.809, -1.1597, -0.809, 1.1597], [1.1053, -0.8608, -1.1241, 0.8797]]]],   # post-norm
            mistakes=[
                (no_residual, [[[0.9895, -0.2766, -0.9945, 0.5415], [-0.3203, -0.9466, -0.838, 0.9975]]]),
                (no_residual, [[[1.2137, -0.4484, -1.3909, 0.6256], [0.7826, -0.9576, -1.0205, 1.1954]]]),
                (no_ff_residual, [[[0.9664, 0.9614, -0.9613, -0.9665], [0.8252, -0.9908, -0.7644, 0.9872]]]),
                (no_ff_residual, [[[1.0256, 0.9737, -1.0256, -0.9737], [0.9421, -1.0682, -0.9277, 1.0539]]]),
                (no_attention_residual, [[[1.2926, -1.7491, -1.1365, 1.8529], [0.2276, -1.1455, -1.1325, 0.9431]]]),
                (no_attention_residual, [[[0.7992, -1.181, -0.7822, 1.1639], [1.1899, -1.0494, -0.9284, 0.788]]]),
                ("the layer norms are missing: normalize before each sub-layer (pre-norm) or after each residual "
                 "(post-norm)", [[[0.242, -0.3729, 1.4806, 2.1792], [3.0657, -1.5991, -2.3465, 2.3104]]]),
            ], what="the output with stand-in sub-layers (expected pre-norm or post-norm)")


# While graded, a check's points need your Block's outputs on inputs drawn then to be a pre-norm or a post-norm Block
# computed by the grader on the same stand-in sub-layers (compare="_public_block_on_stand_ins"); the shape check
# above counts with the values check.
checks.check("with sub-layers that return 0, the block returns its input (residual connections)", 1,
             _public_block_zero_sublayers, _public_block_identity, compare="_public_block_on_stand_ins")
checks.check("the sub-layers see normalized inputs, or the block's output is normalized (layer norms)", 1,
             _public_block_sublayer_inputs, _public_block_layer_norms, compare="_public_block_on_stand_ins")
checks.check("output values with stand-in sub-layers", 2, _public_block_values, _public_block_expected_values,
             compare="_public_block_on_stand_ins")
### BEGIN HIDDEN TESTS
class _BlockAttention(nn.Module):
    """A stand-in for CausalSelfAttention: each position mixes the positions up to it."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.mix = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        positions = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        return self.dropout(self.mix(torch.tanh(x).cumsum(dim=1) / positions))


class _BlockFeedForward(nn.Module):
    """A stand-in for FeedForward."""

    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.up, self.down = nn.Linear(hidden_size, 2 * hidden_size), nn.Linear(2 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.down(torch.tanh(self.up(x))))


def _stand_in_block(seed=80, dropout=0.0):
    """The student's Block, built on the stand-ins, whose weights the check sets: a mistake in CausalSelfAttention or
    FeedForward costs nothing here."""
    torch.manual_seed(drawn(seed))
    with replaced(CausalSelfAttention=_BlockAttention, FeedForward=_BlockFeedForward):
        block = Block(hidden_size=16, num_heads=4, dropout=dropout, seq_len=8).to(DEVICE).eval()
    set_stand_in_weights([m for m in block.modules() if isinstance(m, _BlockAttention)], seed + 1)
    set_stand_in_weights([m for m in block.modules() if isinstance(m, _BlockFeedForward)], seed + 2)
    return block


def _block_outputs(block, **inputs):
    """The block's output for each input, with the inputs and the stand-ins' weights."""
    with torch.no_grad():
        return {"outputs": {key: block(x) for key, x in inputs.items()}, "inputs": inputs,
                "attention": [m.state_dict() for m in block.modules() if isinstance(m, _BlockAttention)],
                "feed_forward": [m.state_dict() for m in block.modules() if isinstance(m, _BlockFeedForward)]}


def _probe_block_causal():
    x = seeded_randn(2, 8, 16, seed=83)
    return _block_outputs(_stand_in_block(), before=x, after=with_last_position_changed(x))


def _probe_block_eval():
    x = seeded_randn(2, 8, 16, seed=84)
    return _block_outputs(_stand_in_block(dropout=0.5), first=x, second=x)


# While graded, each check's points need the Block's outputs on inputs drawn then to be a pre-norm or post-norm Block
# on the stand-ins, computed by the grader (compare="_block_on_stand_ins").
checks.check("works for a sequence shorter than seq_len", 1,
             lambda: _block_outputs(_stand_in_block(), x=seeded_randn(2, 5, 16, seed=82)), "verdict_block_shorter",
             compare="_block_on_stand_ins")
checks.check("a position never sees later positions", 1, _probe_block_causal, "verdict_block_causal",
             compare="_block_on_stand_ins")
checks.check("attention and feed-forward with residual connections and layer norms", 2,
             lambda: _block_outputs(_stand_in_block(), x=seeded_randn(2, 6, 16, seed=81)), "verdict_block_values",
             compare="_block_on_stand_ins")
checks.check("dropout is off in eval mode", 1, _probe_block_eval, "verdict_block_eval", compare="_block_on_stand_ins")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# ## Complete transformer (10 points)
# - word embeddings;
# - position embeddings (learned, one per position `0 … seq_len - 1`): the input of the first block is the sum of the word and position embeddings;
# - as many blocks as you like to stack (`num_layers`), each with its own weights;
# - an output layer back to the vocabulary (no need for a softmax: the model returns *logits*, unnormalized scores).
#
# Keep `seq_len` as an attribute (`self.seq_len`): generation will need it. The model must also work on sequences shorter than `seq_len`.

# %% nbgrader={"grade": false, "grade_id": "Transformer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class Transformer(nn.Module):

    def __init__(self, vocab_size=100, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3, num_layers=2):
        super().__init__()
        self.seq_len = seq_len
        ### BEGIN SOLUTION
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.position_embedding = nn.Embedding(seq_len, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, dropout, seq_len) for _ in range(num_layers)])
        self.final_norm = nn.LayerNorm(hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size)
        ### END SOLUTION

    def forward(self, input_ids):
        ### BEGIN SOLUTION
        B, T = input_ids.shape
        positions = torch.arange(T, device=input_ids.device)                        # (T,)
        x = self.dropout(self.token_embedding(input_ids) + self.position_embedding(positions))  # (B, T, hidden)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.final_norm(x))                                    # (B, T, vocab_size)
        ### END SOLUTION


# %%
transformer = Transformer()

# %%
input_ids = torch.randint(0, 100, (1, 3))

# %%
input_ids

# %%
logits = transformer(input_ids)

# %%
# scores (not probabilities, because they are not normalized) over the complete vocabulary, for each token in the sentence
# shape: batch size, seq_len, V
logits.shape  # expected: torch.Size([1, 3, 100])


# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of Transformer.
def verdict_transformer_shapes(data):
    assert data["seq_len"] == 12, "the model should keep its context length as its attribute seq_len (decode reads it to crop the context)"
    for key, T in (("full", 12), ("shorter", 5)):
        expect_tensor(data["outputs"][key], (2, T, 50), f"the logits for {T} tokens (seq_len=12)")


def verdict_transformer_causal(data):
    _expect_causal(data["outputs"])


def verdict_transformer_positions(data):
    same_token = data["outputs"]["same"]
    expect_tensor(same_token, (1, 6, 50), "the logits")
    assert not _close(same_token[:, 1:], same_token[:, :1].expand(-1, 5, -1)), (
        "a sequence that repeats one token gets the same logits at every position: "
        "add position embeddings, indexed by position (0, 1, …, T - 1), not by token id")


def verdict_transformer_prefix(data):
    full = data["outputs"]["full"]
    expect_tensor(full, (2, 12, 50), "the logits")
    _expect_values(data["outputs"]["prefix"], full[:, :5],
                   what="logits of the first 5 tokens, run alone, compared with the same tokens inside 12")


def verdict_transformer_stacking(data):
    blocks, calls = data["blocks"], data["calls"]
    assert blocks == 3, f"with num_layers=3 the model should contain 3 separate blocks, found {blocks} (each needs its own weights: create a new Block for each layer)"
    assert len(calls) == 3 and len(set(calls)) == 3, (
        f"the forward pass should apply each of the 3 blocks once, in turn; it applied {len(calls)} block calls")


def verdict_transformer_embeddings_and_head(data):
    logits, ids = data["outputs"]["x"], seeded_randint(50, (2, 7), seed=94)
    expect_tensor(logits, (2, 7, 50), "the logits")
    assert not (logits.min() >= 0 and torch.allclose(logits.sum(-1), torch.ones_like(logits[..., 0]), atol=1e-3)), (
        "the model returns probabilities: return the logits, without a softmax")
    E, P = seeded_randn(50, 16, seed=96), seeded_randn(12, 16, seed=97)  # the weights the probe set (salt 0)
    _expect_values(data["first"], F.embedding(ids, E) + P[:7],
                   what="input of the first block (word + position embeddings)")
    _expect_head(logits, data["lasts"]["x"], E)


def _expect_head(logits, last, E):
    assert isinstance(last, torch.Tensor), "not checked: the last block is never applied (see the check of the blocks)"
    normed = [F.layer_norm(last, last.shape[-1:], eps=eps) for eps in NORM_EPSILONS]
    assert any(_close(logits, h @ E.T) for h in [last, *normed]), (
        "the logits should be the output layer applied to the last block's output (optionally after a final LayerNorm)")


def _transformer_on_stand_ins(data, reference):
    """compare: with the weights the check set (word embeddings E, also the output layer's; position embeddings;
    the stand-in blocks'), the output of the last block is the grader's, and the logits are it times Eᵀ, after a
    final LayerNorm or not; the blocks, their calls, the first block's input and the length kept are the grader's
    too; causality holds when the probe changed the last position."""
    for key in ("seq_len", "blocks", "calls", "first"):
        if key in reference:
            same_data(data[key], reference[key], what=key.replace("_", " "))
    for key, last in reference["lasts"].items():
        same_data(data["lasts"][key], last, what=f"the output of the last block ({key})")
        _expect_head(data["outputs"][key], last, reference["weights"]["E"])
    if "before" in reference["lasts"]:
        _expect_causal(data["outputs"])


# %% nbgrader={"grade": true, "grade_id": "test_Transformer", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of Transformer: run this cell after your answer (the lines it prints say what was checked)
"""Checks Transformer with stand-in blocks: shapes, causality, position embeddings, stacking and logits."""
checks = Checks("Transformer", points=10)


class _PublicBlock(nn.Module):
    """A stand-in for Block: a residual mix of each position with the positions before it."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.mix = nn.Linear(hidden_size, hidden_size)

    def forward(self, x):
        positions = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        return x + self.mix(torch.tanh(x).cumsum(dim=1) / positions)


def _language_model(block, seed, vocab_size=20, hidden_size=8, seq_len=6, num_layers=2, **sizes):
    """Your Transformer built on stand-in blocks, in eval mode, its weights set by the check (see
    set_language_model_weights): (model, its stand-in blocks, the weights)."""
    torch.manual_seed(drawn(seed))
    with replaced(Block=block):  # see `replaced`
        model = Transformer(vocab_size=vocab_size, hidden_size=hidden_size, seq_len=seq_len, num_layers=num_layers,
                            **sizes)
    model = model.to(DEVICE).eval()
    blocks = [m for m in model.modules() if isinstance(m, block)]
    return model, blocks, set_language_model_weights(model, vocab_size, hidden_size, seq_len, seed, blocks)


def _logits(model, blocks, weights, **inputs):
    """The logits for each input, and what the last block call returned (the output layer's input, before a final
    layer norm), with the weights the check set."""
    seen, data = {}, {"outputs": {}, "lasts": {}, "weights": weights}
    hooks = [b.register_forward_hook(lambda module, inputs, output: seen.update(last=output)) for b in blocks]
    try:
        with torch.no_grad():
            for key, ids in inputs.items():
                seen.clear()
                data["outputs"][key] = model(ids)
                data["lasts"][key] = seen.get("last")
    finally:
        for hook in hooks:
            hook.remove()
    return data


def _public_transformer(num_layers=2, seed=300):
    return _language_model(_PublicBlock, seed, num_heads=2, dropout=0.0, num_layers=num_layers)


def _public_transformer_shapes():
    model, blocks, weights = _language_model(_PublicBlock, 310, vocab_size=100, seq_len=3)  # the default sizes
    return _logits(model, blocks, weights, full=seeded_randint(100, (2, 3), seed=0),
                   shorter=seeded_randint(100, (2, 2), seed=0))


def _public_transformer_expected_shapes(data):
    expect_tensor(data["outputs"]["full"], (2, 3, 100), "the logits for 3 tokens (seq_len=3)")
    expect_tensor(data["outputs"]["shorter"], (2, 2, 100), "the logits for 2 tokens (seq_len=3): the model must work "
                                                           "on sequences shorter than seq_len")


def _public_transformer_positions():
    (model, blocks, weights), ids = _public_transformer(), seeded_randint(20, (1, 6), seed=1)
    full = {} if drawn_run() else {"full": ids}  # see drawn_run
    data = _logits(model, blocks, weights, same_token=torch.full((1, 6), 7, device=DEVICE), **full)
    try:
        prefix = _logits(model, blocks, weights, prefix=ids[:, :3])
    except RuntimeError:
        raise AssertionError("not checked: the model fails for a sequence shorter than seq_len "
                             "(see the check of the shapes above)") from None
    data["outputs"]["prefix"], data["lasts"]["prefix"] = prefix["outputs"]["prefix"], prefix["lasts"]["prefix"]
    return data


def _public_transformer_uses_positions(data):
    data = {**data["outputs"]}
    same = data["same_token"]
    expect_tensor(same, (1, 6, 20), "the logits")
    assert not torch.allclose(same[:, 1:], same[:, :1].expand(-1, 5, -1), atol=1e-5), (
        "a sequence that repeats one token gets the same logits at every position: "
        "add position embeddings, indexed by position (0, 1, …, T - 1), not by token id")
    expect_tensor(data["full"], (1, 6, 20), "the logits")
    expect_tensor(data["prefix"], (1, 3, 20), "the logits of the first 3 tokens")
    assert torch.allclose(data["prefix"], data["full"][:, :3], atol=1e-5), (
        "the logits of the first 3 tokens change when 3 more tokens follow them: the position embeddings must count "
        "from 0 at the first token (0, 1, …, T - 1), whatever the length of the sequence")


def _public_transformer_stacking():
    (model, blocks, _), calls = _public_transformer(num_layers=3), []
    hooks = [b.register_forward_hook(lambda module, inputs, output: calls.append((module, inputs[0], output)))
             for b in blocks]
    try:
        with torch.no_grad():
            model(seeded_randint(20, (1, 6), seed=2))
    finally:
        for hook in hooks:
            hook.remove()
    return {"blocks": len(blocks), "calls": [blocks.index(m) for m, _, _ in calls],
            "inputs": [i for _, i, _ in calls], "outputs": [o for _, _, o in calls]}


def _public_transformer_stacked(data):
    blocks, calls = data["blocks"], data["calls"]
    if blocks < len(calls) and len(set(calls)) < len(calls):
        raise AssertionError(f"the {len(calls)} layers share {blocks} block(s), hence the same weights: "
                             "each layer needs a Block of its own (create a new Block for each layer)")
    assert blocks == 3, f"with num_layers=3 the model should contain 3 blocks, found {blocks}"
    assert sorted(calls) == [0, 1, 2], (
        f"the forward pass should apply each of the 3 blocks once; it made {len(calls)} block call(s) "
        f"(block{'s' if len(set(calls)) != 1 else ''} {sorted(set(calls))})")
    for i in range(1, 3):
        assert torch.equal(data["inputs"][i], data["outputs"][i - 1]), (
            "the blocks are not stacked: each block should take the output of the block before it")


def _public_transformer_logits():
    return _logits(*_public_transformer(), x=seeded_randint(20, (2, 6), seed=3))


def _public_transformer_not_probabilities(data):
    logits = data["outputs"]["x"]
    expect_tensor(logits, (2, 6, 20), "the logits")
    assert not (logits.min() >= 0 and torch.allclose(logits.sum(-1), torch.ones_like(logits[..., 0]), atol=1e-3)), (
        "the model returns probabilities (each row sums to 1): return the logits, without a softmax")


# While graded, a check's points need the model's outputs on inputs drawn then to be the grader's, for the weights the
# check set: each block's input and output, and the logits, after a final layer norm or not
# (compare="_transformer_on_stand_ins"; the stacking check's block inputs and outputs are compared as they are).
checks.check("logits of shape (B, T, vocab_size), for T = seq_len and T < seq_len", 1, _public_transformer_shapes,
             _public_transformer_expected_shapes, compare="_transformer_on_stand_ins")
checks.check("position embeddings are used, counted from the first token", 1, _public_transformer_positions,
             _public_transformer_uses_positions, compare="_transformer_on_stand_ins")
checks.check("num_layers blocks, each with its own weights, applied in turn", 1, _public_transformer_stacking,
             _public_transformer_stacked)
checks.check("returns logits, not probabilities", 1, _public_transformer_logits, _public_transformer_not_probabilities,
             compare="_transformer_on_stand_ins")
### BEGIN HIDDEN TESTS
class _MixingBlock(nn.Module):
    """A stand-in for Block: a residual mix of each position with the positions before it. The same as the public
    _PublicBlock, but a class of its own, made after every cell of the student's: none of them can have patched it."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.mix = nn.Linear(hidden_size, hidden_size)

    def forward(self, x):
        positions = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        return x + self.mix(torch.tanh(x).cumsum(dim=1) / positions)


def _stand_in_transformer(seed=90, num_layers=3):
    """The student's Transformer, built on stand-in blocks, its weights set by the check: a mistake in Block costs
    nothing here."""
    return _language_model(_MixingBlock, seed, vocab_size=50, hidden_size=16, num_heads=4, dropout=0.0, seq_len=12,
                           num_layers=num_layers)


def _probe_transformer_shapes():
    model, blocks, weights = _stand_in_transformer()
    data = _logits(model, blocks, weights, full=seeded_randint(50, (2, 12), seed=91),
                   shorter=seeded_randint(50, (2, 5), seed=91))
    return {"seq_len": getattr(model, "seq_len", None), **data}


def _probe_transformer_causal():
    ids = seeded_randint(50, (2, 8), seed=95)
    return _logits(*_stand_in_transformer(), before=ids, after=with_last_position_changed(ids))


def _probe_transformer_positions():
    return _logits(*_stand_in_transformer(), same=torch.full((1, 6), 7, device=DEVICE))


def _probe_transformer_prefix():
    ids = seeded_randint(50, (2, 12), seed=92)
    full = {} if drawn_run() else {"full": ids}  # see drawn_run
    return _logits(*_stand_in_transformer(), prefix=ids[:, :5], **full)


def _probe_transformer_stacking():
    (model, blocks, weights), calls = _stand_in_transformer(num_layers=3), []
    hooks = [b.register_forward_hook(lambda module, inputs, output: calls.append(module)) for b in blocks]
    try:
        data = _logits(model, blocks, weights, x=seeded_randint(50, (1, 6), seed=93))
    finally:
        for hook in hooks:
            hook.remove()
    return {"blocks": len(blocks), "calls": [blocks.index(m) for m in calls], **data}


def _probe_transformer_embeddings_and_head():
    model, blocks, weights = _stand_in_transformer(seed=96, num_layers=2)
    seen = {}
    hook = blocks[0].register_forward_pre_hook(lambda module, inputs: seen.setdefault("first", inputs[0])) if blocks else None
    try:
        data = _logits(model, blocks, weights, x=seeded_randint(50, (2, 7), seed=94))
    finally:
        if hook is not None:
            hook.remove()
    return {"first": seen.get("first"), **data}


# While graded, see the public checks: compare="_transformer_on_stand_ins".
checks.check("works for sequences up to seq_len, and keeps self.seq_len", 1, _probe_transformer_shapes,
             "verdict_transformer_shapes", compare="_transformer_on_stand_ins")
checks.check("a position never sees later tokens", 1, _probe_transformer_causal, "verdict_transformer_causal",
             compare="_transformer_on_stand_ins")
checks.check("position embeddings are used", 1, _probe_transformer_positions, "verdict_transformer_positions",
             compare="_transformer_on_stand_ins")
checks.check("positions count from 0 whatever the length", 1, _probe_transformer_prefix, "verdict_transformer_prefix",
             compare="_transformer_on_stand_ins")
checks.check("num_layers blocks, stacked, each with its own weights", 1, _probe_transformer_stacking,
             "verdict_transformer_stacking", compare="_transformer_on_stand_ins")
checks.check("embeddings in, logits out", 1, _probe_transformer_embeddings_and_head,
             "verdict_transformer_embeddings_and_head", compare="_transformer_on_stand_ins")
### END HIDDEN TESTS
checks.score()

# %% [markdown]
# # Training
#
# A peek into language modeling (next class)
#
# ![A language model: the probability of each next word, given the words before it](https://paullerner.github.io/aivancity_nlp/_static/lm.png)
#
# A language model estimates the probability of a sequence of words $w$:
# $$P(w)=\prod_{t=1}^{|w|} P(w_t | w_{<t}) = P(w_1)  P(w_2|w_1)  P(w_3 | w_1 w_2)...$$
#
# See how this turns into a sequence of classification problems:
# - first $P(w_1)$
# - then $P(w_2|w_1)$
# - etc.
#
# The model "predicts the next word" given a context.
#
# ## Data
#
# We use WikiText-103, a corpus of Wikipedia articles, one line of text per example. While the notebook is graded, or when the Hugging Face Hub can't be reached (`HF_HUB_OFFLINE=1`, or no network), it uses a small sample of WikiText instead: `data/wikitext_sample.json` next to the notebook, or, when the notebook was opened without its `data/` folder (in Colab, from GitHub), the same sample embedded in the cell below.

# %% nbgrader={"grade": false, "grade_id": "load_data", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
import base64
import json
import zlib

import datasets
from datasets import Dataset, DatasetDict, load_dataset

if GRADING:
    datasets.disable_progress_bars()

# The same sample, compressed, for a notebook opened without its data/ folder (in Colab, from GitHub):
EMBEDDED_SAMPLE = "eNqNWF2PJDcVfd9fYc0LidSMWKIQZaSVsklWy6B8rDKTrIDw4K5yd3vbZVdsV/d2EA/svvDCfwAkQALBU/4B4peM4HdwzrWrumamV0SRoumyfX3vuefee7y/fqDOctTWn12oXz5Q6uxswf+rR+or7baHaLX6aBODt40zSV1eXmLla1821a1Xxr/49++VD8cj76gL9aWPpgmxNe3cwlvqZ7rX3iSDLf/93V/+84fvbn77z5vX3928+uPN67/fvPrHzes/37z+282rP72jFsrZrM6PdsNK5Y1RH+qcnVlZ41pc9Tb2NaHrgncHFc3KxIg7c1A6vTGIMORkW1OcwXmblFZZN9k22qkYnFEf/PAD1Tt9sH6tdtgb1Fp3RrVmZ1zoccPygNDXWmnfqk9Na/X5VzbZ4NUqRHHzGU5fZZ357VmIWS9h9lx9YZzRCQasx/1+0PGgfvyjhw/L7+pPpks0kjc2tuVqrPPLFFMy0SKec/Wk610QR7meuHc1iCsEbIyKfkaDPxhZtthEqwyRSNmcVA/gTGNSCjHBCTGWA9yLg8eqjto54wgtl1Y2plw8o+lVcC7si9Nfn6nP8B1oJ/69ALi98bi6s8goAx48QkQAu9FrX3CCw09xC6JrhziuXYFIuOHJEAPhea6j2m8CTEZA3cFME01WS6ebrUJqophK4pWORvU2Z8Ct16A5PKbFyw7bLBwSP+DiR9rpTueD+kLvjOeX87s8f4T/no6IPbpfB4+T2tu8IYo7G4ZKPhtvkY9wEds3EfP/EFHQ3m8Mo8IngzxlvTXgv8/YTPj0HZCJguxB/jI51NmUCj4VEONNdyBrG2HTFVJOXhG6HFBiGS4O6w2LzDZqGcJWfHJWjHrjauDaW0AIpJsNqNJkE1UP2qO7ZIYse6alpFJv9JZB0THkAtU73rQLtoEd7DDNRi2H5ZL4MJL7ewdfd2fzks3iejNig0yEdQQHTZp2T1UDpJz1BlSa8FioddTtINYH70KzJWuS6nRPAzqrBuxbgvnRGOxJ+OnNEZ9SYHK3nAPRDoLiZKx4h92Z0CqjEV2pMGyoBVCKHHeqnRZPW4PaaQkU1uCAxQ80JPg5xvkDYNMjWJq7ID1oxqAUxCIolVCKDTNTijrgf7F81w5fw2o1FnW1eK4+rx1yhs5sfZZGACy00kCn65lnoSe5l0bAmgFRdvZb4uLn/FjHsAcrQtMMMc1KTnASsiO2pbR7lQ4pm6768aGz1784frK8KgIuBLOD3dZi+GTkaBVDd7dbnauPS2+ZxTZWU0GqZEbKB30UO1GToRfWt2Hv2XnATRTpzowzaTmbSUzeBVLQGKIyBXs/ERXNDj6XxnncrMESVu4d0zIDOBGkK8ANJPhEp/rEpiVW7vWo+r3OlkajNdbJwN9OxzWz2Vg0QsTFoTWsseFcXWaUC8um0NNjBWlGcrXfjhBc6zW6HgzISFsoqS4uPM5Oe3Q09XljZLzxQpsKSctZ9Jl6M29BlM/xkxdI0ze1csQxHNx6ZoFzliTbWOeSDM2kDoZTSKHpdKVh8GO2ZPlK/+uvujW3aPbpgDxXF8T4XrPgEprpoYx4riCOvPlmYBPF3ofvvfuu0NziLPeXyVe2gyhp8Lqzcjk+gHemdo/lENku6HaCisA0Va0+pBobTQAuBkaj0SwH67LUPH6sByQH5WJZregZ6EDSVGcQFoabl6hCVxoc6CUNauY/aQOHbMrICEjWbGwGI4co8mIC+8Toe4IZE7qTk09aLhjBO48Mm7m2RBUxvZU9Ex+aoJOcOmY5oDSTVDl6cVEWIhM4mzpGMPSol3JqyhqahKnuLeqRgq/1JJF0VvzCAMO8IsE2mPI8biOxLavognJLlVli+AQS11H7RN2BbL0Fl4AgAoWki156Smghkd4+IQ8Y0XRS5nxrTH88eSsZS1GIFS/Uv/HSyzvMQ0QAgKQkSRTLyd8OTRGUEJLvjRH0Gg2CUubxdP4yqcfOqZ+HQX1mcKKIMymTyh/bYZDsTFvVH+b5iPQoH2rEEo0rQ2tWUV960QVovwN0ODjmTd6HuE2iAucQ4J6mDGdM3KJ1w9b4VERMMt8MRjpoLp30ojTl0jEd2c8cH8qhAlE7TrEy4Ko5lKqx602uarJjVW7QIyJ68Y5VMM1pFqItNEtKXkV16kpjBH0iWA59xaax0uxPXIRo6NEL0hgQz5TpN4PlE+3Xg4YR4QcGAW0ge0+fXcvVpdhlWmnC3pSuOoMLyhxHI2QutERtGsVt8bQ8eajgbVM0rqceKugIoqKPFmOzP6g1dF9kfmWB1TpCyc22e0MfOJLpDZ3gyNZyrRjlc8zP0iITG+U4cBhOQ7oNmSiCzbkcBgeQ4h2KAk1T9LzamunDghLMHft0Qo+L1FdhbA+WUqADC6xop5aDq9NOlEjRrCqFVe70y9qFIc3g0zggC3GoRIduLIOddoOpHtxK8SVqY3DZSo/dGN3OkFhMHen4jVsSn1asqulxtSg0F+fIIZEbMbyg2ihSpSYQoRVni1JH+4OCxCMrV5FVDxEdsumc/lGjDQleuFt0lNLsdNrK2wXupeJEH5IVVwsvpcSkiqpWrMt1vJUxqOTFfr9rijY4yZeyVBF3wYsEiZYyrkJ+ueRjDY9og4JMmISl+2FQHNt1B7mU+Z7hIaOLeLjq8QXRreRluqdh3cSAV2lZIU6TyCnImq6vEqRGeUe8INA64vBSmqY4xQZdl5Q1mGEJbBz63lFRiJyjaWq/aGWwVONl+MwBe6B+hT/OwDLbSnO99w8zdDjch7J8rjCm8mL+/oJuVG0V8Y8RQqhJsDPJN01doh0Px+GxQS9bWz6diYCnzGY7oijYc1qMeokaeGP7fqx6wQuaTccRQYFFLr7zHEBr5ssUqgEMjeaWAFgcC8bjHQAajhJJZBhk05qx0uoxvEVVew1uZ9Go5yFCYv8UZMusjStMY0b/8P33f3K6F97t6qf+VeBurWlMiDVf36zQpV7ysS58mM08hIaZ2SbJU6LOh6R7KUlkEW/4EmCXQQMo3bsD4wcKTQ42/NWzNtr6z0jSHXXdeVHLbF+hmNkub5KlybmuFYfvkzODLfdoWTA9WeFlSSRPp1+gcX+f6i41O5EkwUYj6SilS67jM8qeXTxX+i8mzb9jOz3xWEBseGEBmx1oedAF5HmAD37zP6l3NKM="


def local_sample():
    """The small sample of WikiText in data/wikitext_sample.json (or, without that file, the copy embedded above),
    with the same splits and "text" column as WikiText-103; and where it was read from."""
    try:
        with open("data/wikitext_sample.json", encoding="utf-8") as f:
            return _as_dataset(json.load(f)), "data/wikitext_sample.json"
    except FileNotFoundError:
        return _as_dataset(json.loads(zlib.decompress(base64.b64decode(EMBEDDED_SAMPLE)))), "the copy embedded in the notebook"


def _as_dataset(splits):
    return DatasetDict({split: Dataset.from_dict({"text": lines}) for split, lines in splits.items()})


if OFFLINE:
    dataset, sample_from = local_sample()
    print(f"Offline: using a small sample of WikiText ({sample_from}) instead of downloading WikiText-103.")
else:
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info("Salesforce/wikitext", timeout=10)  # when the Hub can't be reached, this fails at once
        dataset = load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1")  # (this one would retry for 25 s)
    except Exception as error:  # no network, or the Hub is down: carry on offline
        OFFLINE = True
        dataset, sample_from = local_sample()
        print(f"Could not download WikiText-103 ({type(error).__name__}): using a small sample of WikiText "
              f"({sample_from}) instead.")

dataset

# %% nbgrader={"grade": false, "grade_id": "demo_dataset_example", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
dataset["train"][3]["text"]

# %% [markdown]
# ## Tokenization
#
# We have hardly talked about tokenization yet! So far we have assumed words, which is impractical given a finite vocabulary size.
#
# Instead, LLMs rely on BPE (byte-pair encoding), a data compression technique, which segments rare words into subwords. We use GPT-2's tokenizer. Offline, we train a small BPE tokenizer of the same kind on the local sample instead.

# %% nbgrader={"grade": false, "grade_id": "load_tokenizer", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
from transformers import AutoTokenizer, PreTrainedTokenizerFast

if not OFFLINE:
    try:
        tokenizer = AutoTokenizer.from_pretrained("openai-community/gpt2")
    except Exception as error:  # the Hub failed since the data cell: carry on offline, data included
        OFFLINE = True
        dataset, sample_from = local_sample()
        print(f"Could not download GPT-2's tokenizer ({type(error).__name__}): using a small sample of WikiText "
              f"({sample_from}) and a tokenizer trained on it instead.")

if OFFLINE:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(dataset["train"]["text"], trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    print(f"Offline: using a BPE tokenizer of {len(tokenizer)} tokens trained on the local sample instead of GPT-2's.")

tokenizer.pad_token = tokenizer.eos_token

seq_len = 128

# %% nbgrader={"grade": false, "grade_id": "demo_tokenize_example", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
print(tokenizer.tokenize(dataset["train"][3]["text"]))

# %% nbgrader={"grade": false, "grade_id": "demo_text_batch", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
text_batch = dataset["train"][:4]["text"]

# %% [markdown]
# Hugging Face's `transformers` provides a convenient way to tokenize text. It also takes care of padding the texts so that all examples of a batch fit in the same `Tensor`, and it returns an `attention_mask`: 1 for real tokens, 0 for padding.

# %% nbgrader={"grade": false, "grade_id": "demo_tokenize_batch", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
batch = tokenizer(text_batch, return_tensors='pt', padding=True, truncation=True, max_length=seq_len)
input_ids, attention_mask = batch['input_ids'], batch['attention_mask']

# %% nbgrader={"grade": false, "grade_id": "demo_input_ids", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
input_ids

# %% nbgrader={"grade": false, "grade_id": "demo_input_ids_shape", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
input_ids.shape

# %% [markdown]
# Notice the padding: short texts are padded with `tokenizer.eos_token_id`, the "end of text" token. (The first text of WikiText is empty, so its row is all padding.)

# %% nbgrader={"grade": false, "grade_id": "demo_eos_token_id", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
tokenizer.eos_token_id

# %% nbgrader={"grade": false, "grade_id": "demo_transformer", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
transformer = Transformer(vocab_size=len(tokenizer), seq_len=seq_len)

# %% nbgrader={"grade": false, "grade_id": "demo_logits", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
# same as before (only larger seq_len and V)
logits = transformer(input_ids)
logits.shape


# %% [markdown]
# ## Self-supervision (15 points)
#
# Remember the greatest thing about language modeling: we don't need to annotate data!
#
# The model should predict the next word given the context, so we just need to shift the input by 1 to get the labels: the logits at position $t$ predict the token at position $t + 1$.
#
# Complete `lm_loss`, which computes the loss of one batch with `nn.CrossEntropyLoss` (or `F.cross_entropy`). Be careful about the padding! We don't want our model to learn to predict padding at the end of the text. Since the padding token is also the end-of-text token, which can appear in real text, recognize padding with `attention_mask` (a target is padding when its `attention_mask` is 0), not by its token id. The loss is the mean over all real target tokens of the batch.
#
# As in the previous practical work, remember to flatten the batch dimension with the sequence dimension.

# %% nbgrader={"grade": false, "grade_id": "lm_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lm_loss(logits, input_ids, attention_mask):
    """Mean next-token cross-entropy over the real (non-padding) target tokens.

    logits: (B, T, V); input_ids and attention_mask: (B, T). Returns a scalar tensor.
    """
    ### BEGIN SOLUTION
    predictions = logits[:, :-1]                   # the logits at position t predict ...
    targets = input_ids[:, 1:]                     # ... the token at position t + 1
    is_real = attention_mask[:, 1:].bool()         # padding is masked on the target side
    return F.cross_entropy(predictions[is_real], targets[is_real])
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "demo_random_model_loss", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
# loss of the randomly initialized model
loss = lm_loss(logits, input_ids, attention_mask)
print(f"loss {loss.item():.2f}, ln V = ln {len(tokenizer)} = {math.log(len(tokenizer)):.2f}")
loss


# %% [markdown]
# Notice anything about this value? What about its exponential? Ever heard of perplexity? More about this in the next class.
#
# **What to expect.** The loss of a randomly initialized model is about $\ln V$, where $V$ is the vocabulary size: $\ln 50257 \approx 10.82$ with GPT-2's tokenizer, $\ln 512 \approx 6.24$ with the small offline one. A model that has learned nothing spreads its probability almost evenly over the $V$ tokens, so it gives the right token a probability of about $1/V$, and the cross-entropy is $-\ln(1/V) = \ln V$. Expect a little more than that (about 0.2 more): the random logits are not all equal, and that costs a little. Its exponential, the *perplexity*, is then about $V$: the model is as unsure as if it picked among all $V$ tokens at random. If your loss is far from $\ln V$ (0, or 50), look at `lm_loss` again before training.

# %% tags=["grader-only"]
# Grader-only: the verdicts of the hidden checks of lm_loss.
def _verdict_loss_against_reference(loss, seed, mistakes, what, asked_data=None):
    logits, input_ids, attention_mask = _loss_inputs(seed)
    variants = {m: _ref_lm_loss(logits, input_ids, attention_mask, mistake=m) for m in mistakes}
    _expect_values(loss, _ref_lm_loss(logits, input_ids, attention_mask), variants, what=what,
                   behaviour=lambda: describe_loss_weights(asked_data, input_ids, attention_mask))


def verdict_loss_value(data):
    loss, asked_data = _answer_and_asked(data, "loss")
    _verdict_loss_against_reference(loss, 100, ["not_shifted", "shifted_twice", "padding_counted", "input_side_mask",
                                                "per_row_mean", "eos_masked", "divided_by_all"], "loss of a padded batch",
                                    asked_data)


def verdict_loss_real_eos(data):
    _, input_ids, attention_mask = _loss_inputs(130)
    assert input_ids[0, 3] == PAD_ID_FOR_TESTS and attention_mask[0, 3] == 1
    loss, asked_data = _answer_and_asked(data, "loss")
    _verdict_loss_against_reference(loss, 130, ["eos_masked", "padding_counted", "input_side_mask"],
                                    "loss of a text that contains a real EOS token", asked_data)


def verdict_loss_padded_logits(losses):
    assert _close(losses["changed"], losses["original"]), (
        "the loss changed when only the logits at padded positions (and after the last real token) changed: "
        "padded targets must not count (a target is padding when its attention_mask is 0)")


def verdict_loss_padded_tokens(losses):
    assert _close(losses["changed"], losses["original"]), (
        "the loss changed when only the tokens at padded positions changed: padded targets must not count "
        "(a target is padding when its attention_mask is 0)")


def verdict_loss_gradient(data):
    assert data["is_tensor"] and data["requires_grad"], (
        "the loss should be a tensor that gradients flow through: don't call .item() or .detach() on it")


# %% nbgrader={"grade": true, "grade_id": "test_lm_loss", "locked": true, "points": 15, "schema_version": 3, "solution": false, "task": false}
# @title Checks of lm_loss: run this cell after your answer (the lines it prints say what was checked)
"""Checks lm_loss: a scalar, the shift, and padding that never counts while real EOS tokens do."""
checks = Checks("lm_loss", points=15)


class _ChecksTokenizer:
    """The notebook's tokenizer as lm_loss's checks show it: its EOS token (GPT-2's padding token too) is id 0, as in
    the checks' inputs, so that a loss that reads tokenizer.eos_token_id is judged the same in Colab (GPT-2's EOS is
    50256) and offline."""
    eos_token_id = pad_token_id = 0

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)


def _lm_loss(*inputs):
    """Your lm_loss, called while `tokenizer` is the checks' (see _ChecksTokenizer)."""
    with wrapped("tokenizer", _ChecksTokenizer):  # see `wrapped`: no tokenizer yet while graded, unless your code reads it
        return lm_loss(*inputs)


def _first_text_unlikely(logits, input_ids, margin=8.0):
    """The logits, with the first text's next tokens made unlikely by a wide margin: its loss is well above the
    others', so a loss that weighs the texts differently from the right mean (per text, say) is far from it on any
    inputs, not only on most (with logits x1000 too, where a text's loss can be exactly 0)."""
    positions = torch.arange(input_ids.shape[1] - 1, device=logits.device)
    logits[0, positions, input_ids[0, 1:]] -= margin
    return logits


def _public_padded_batch():
    """Two texts: the first has a real EOS token (id 0) inside it; the second is 3 tokens long, then 2 of padding (id 0)."""
    input_ids = torch.tensor([[3, 1, 0, 4, 2], [2, 4, 1, 0, 0]], device=DEVICE)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], device=DEVICE)
    return _first_text_unlikely(seeded_randn(2, 5, 5, seed=2), input_ids), input_ids, attention_mask


def _public_unpadded_batch():
    logits, input_ids = seeded_randn(2, 4, 5, seed=0), seeded_randint(5, (2, 4), seed=1)  # ids [[0, 4, 4, 3], [3, 3, 1, 1]]
    input_ids[:, 1:] = input_ids[:, 1:].clamp(min=1)  # no EOS (id 0) to predict: this check is about the shift and the mean
    return logits, input_ids, torch.ones(2, 4, dtype=torch.long, device=DEVICE)


def _loss_asked(inputs):
    """Your lm_loss on `inputs`, and which positions it counts and how much each weighs, read from its gradient (see
    loss_weights_asked): the second only says what a wrong loss is consistent with."""
    return {"loss": _lm_loss(*inputs), "asked": asked(lambda: loss_weights_asked(_lm_loss, *inputs))}


def _public_loss_expected(expected, what, inputs=None, **mistakes):
    messages = {"not_shifted": "the targets are not shifted: the logits at position t must predict the token at position t + 1",
                "shifted_twice": "the targets are shifted by two positions instead of one",
                "sum": "the losses of the target tokens are summed: the loss is their mean",
                "padding_counted": "padded positions are counted in the loss: average only over targets whose "
                                   "attention_mask is 1",
                "input_side_mask": "the mask is taken on the input side: a target is padding when the attention_mask "
                                   "of the target token (not of the token before it) is 0",
                "per_row_mean": "the loss is averaged per sequence, then over sequences: average over all the real "
                                "target tokens of the batch at once",
                "eos_masked": "every EOS token is ignored, including the real one inside the text: recognize padding "
                              "by its attention_mask, not by its token id",
                "divided_by_all": "the padded positions are zeroed but still counted in the average ((loss * mask).mean() "
                                  "divides by every position): divide the sum by the number of real target tokens"}

    def verdict(data):
        loss, asked_data = _answer_and_asked(data, "loss")
        assert isinstance(loss, torch.Tensor), (
            f"lm_loss should return a tensor, not {getattr(loss, 'type_name', type(loss).__name__)} (don't call .item())")
        behaviour = (lambda: describe_loss_weights(asked_data, *inputs()[1:])) if inputs else None
        expect_numbers(loss, expected, [(messages[k], v) for k, v in mistakes.items()], what=what, behaviour=behaviour)
    return verdict


def _public_loss_large_logits():
    logits, input_ids, attention_mask = _public_padded_batch()
    return _lm_loss(1000 * logits, input_ids, attention_mask)


def _public_loss_finite(loss):
    expect_tensor(loss, (), "the loss")
    assert torch.isfinite(loss), (
        f"the loss is {loss.item()} when the logits are large (x1000): the probabilities of unlikely tokens round "
        "to 0, and log(0) = -inf. Compute the log-probabilities in one stable step (F.cross_entropy, or "
        "F.log_softmax), not as the log of a softmax")


checks.check("without padding: the mean cross-entropy of the next token", 3, lambda: _loss_asked(_public_unpadded_batch()),
             _public_loss_expected(1.27834, "the loss without padding", _public_unpadded_batch, not_shifted=1.77329, shifted_twice=1.67238,
                                   sum=7.67001))
checks.check("a padded batch: the mean over the real target tokens only", 3, lambda: _loss_asked(_public_padded_batch()),
             _public_loss_expected(6.23427, "the loss of a padded batch", _public_padded_batch, padding_counted=4.84827,
                                   input_side_mask=5.47497, per_row_mean=5.03224, eos_masked=5.89148, divided_by_all=4.67570,
                                   not_shifted=1.82188, shifted_twice=1.37484, sum=37.40562))
checks.check("large logits give a finite loss", 1, _public_loss_large_logits, _public_loss_finite)
### BEGIN HIDDEN TESTS
PAD_ID_FOR_TESTS = 0  # the tests' stand-in for the EOS token, which GPT-2 also uses as padding


def _padded_batch(seed, batch=3, length=7, vocab=50):
    """A right-padded batch whose padding is the EOS id, with one real EOS inside the text."""
    input_ids = seeded_randint(vocab, (batch, length), seed)
    lengths = [length, 4, 5][:batch]
    attention_mask = torch.zeros(batch, length, dtype=torch.long, device=DEVICE)
    for row, n in enumerate(lengths):
        attention_mask[row, :n] = 1
        input_ids[row, n:] = PAD_ID_FOR_TESTS
    input_ids[0, 3] = PAD_ID_FOR_TESTS  # a real EOS token, inside the text: it must be predicted
    return input_ids, attention_mask


def _loss_inputs(seed):
    input_ids, attention_mask = _padded_batch(seed)
    return _first_text_unlikely(seeded_randn(3, 7, 50, seed=seed + 1), input_ids), input_ids, attention_mask


def _probe_loss_padded_logits():
    logits, input_ids, attention_mask = _loss_inputs(110)
    changed = logits.clone()
    changed[attention_mask == 0] = 100 * seeded_randn(int((attention_mask == 0).sum()), 50, seed=112)
    last_real = attention_mask.sum(1) - 1
    changed[torch.arange(3, device=DEVICE), last_real] = seeded_randn(3, 50, seed=113) * 100  # nothing to predict after it
    if drawn_run():  # see drawn_run
        return {"changed": _lm_loss(changed, input_ids, attention_mask)}
    return {"changed": _lm_loss(changed, input_ids, attention_mask), "original": _lm_loss(logits, input_ids, attention_mask)}


def _probe_loss_padded_tokens():
    logits, input_ids, attention_mask = _loss_inputs(120)
    changed = input_ids.clone()
    changed[attention_mask == 0] = 17
    if drawn_run():  # see drawn_run
        return {"changed": _lm_loss(logits, changed, attention_mask)}
    return {"changed": _lm_loss(logits, changed, attention_mask), "original": _lm_loss(logits, input_ids, attention_mask)}


def _probe_loss_gradient():
    """Whether the loss is a tensor with a gradient, and that gradient with respect to the logits (which, while
    graded, must be the grader's for this check's points)."""
    logits, input_ids, attention_mask = _loss_inputs(140)
    loss = _lm_loss(logits.requires_grad_(True), input_ids, attention_mask)
    data = {"is_tensor": isinstance(loss, torch.Tensor), "requires_grad": bool(getattr(loss, "requires_grad", False))}
    if data["is_tensor"] and data["requires_grad"]:
        loss.backward()
        data["gradient"] = logits.grad
    return data


checks.check("the mean over real target tokens of a padded batch", 3, lambda: _loss_asked(_loss_inputs(100)), "verdict_loss_value")
checks.check("logits at padded positions don't count", 1, _probe_loss_padded_logits, "verdict_loss_padded_logits")
checks.check("tokens at padded positions don't count", 1, _probe_loss_padded_tokens, "verdict_loss_padded_tokens")
checks.check("a real EOS token inside the text counts", 2, lambda: _loss_asked(_loss_inputs(130)), "verdict_loss_real_eos")
checks.check("gradients flow through the loss", 1, _probe_loss_gradient, "verdict_loss_gradient")
### END HIDDEN TESTS
checks.score()


# %% [markdown]
# ## Training loop
#
# Everything runs on `device`, the GPU when there is one: the training code below moves the model and every batch there with `.to(device)`.
#
# ### One training step (10 points)
#
# Complete `train_step`, which performs one optimization step on one batch and returns the loss as a Python float:
# 1. reset the gradients left over by the previous step (`optimizer.zero_grad()`),
# 2. compute the logits, then the loss with `lm_loss`,
# 3. backpropagate,
# 4. clip the norm of the gradients at 1.0 with `nn.utils.clip_grad_norm_` (before the optimizer step!),
# 5. update the parameters with the optimizer.

# %% nbgrader={"grade": false, "grade_id": "train_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_step(model, optimizer, input_ids, attention_mask):
    """One optimization step on one batch; returns the loss (before the update) as a float."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()
    ### END SOLUTION


# %% tags=["grader-only"]
# Grader-only: one training step done right (and the known ways to get it wrong), to judge train_step's.
def _reference_step(seed, stale=None, clip=True):
    """The model of `_train_step_setup(seed)` after one SGD step, and the loss before it."""
    model, input_ids, attention_mask = _train_step_setup(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    if stale is not None:
        for parameter, gradient in zip(model.parameters(), _stale_gradients(model, seed)):
            parameter.grad = gradient.clone()
    loss = _step_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return _flat(model.parameters()), loss.item()


def _flat(parameters):
    return torch.cat([p.detach().flatten() for p in parameters])


def _verdict_train_step_update(parameters, seed, what):
    expected, _ = _reference_step(seed)
    variants = {
        "the gradients of the previous step are not reset: the old gradients add up with the new ones unless they are zeroed before the backward pass":
            _reference_step(seed, stale=True)[0],
        "the gradients are not clipped before the optimizer step: clip the norm of the gradients at 1.0 after the backward pass and before the update":
            _reference_step(seed, clip=False)[0],
        "the gradients of the previous step are not reset (optimizer.zero_grad()), and not clipped before the step":
            _reference_step(seed, stale=True, clip=False)[0],
        "the parameters did not change: the optimizer never updated them": _flat(_train_step_setup(seed)[0].parameters()),
    }
    assert isinstance(parameters, list) and all(isinstance(p, torch.Tensor) for p in parameters), "no parameters came back"
    _expect_values(_flat(parameters), expected, variants, what=what)


def verdict_train_step_update_160(parameters):
    _verdict_train_step_update(parameters, 160, "parameters after one step")


def verdict_train_step_update_170(parameters):
    _verdict_train_step_update(parameters, 170, "parameters after one step on another batch")


def verdict_train_step_loss(loss):
    _, expected = _reference_step(150)
    assert isinstance(loss, (float, int)) or (isinstance(loss, torch.Tensor) and loss.numel() == 1), (
        f"train_step should return the loss as a float, not {type(loss).__name__ if not isinstance(loss, Other) else loss.type_name}")
    assert abs(float(loss) - expected) < 1e-4 * max(1.0, abs(expected)), (
        f"train_step should return the loss computed before the update ({expected:.4f}), not {float(loss):.4f}")


# %% nbgrader={"grade": true, "grade_id": "test_train_step", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of train_step: run this cell after your answer (the lines it prints say what was checked)
"""Checks train_step with a stand-in model and loss: the returned loss, zero_grad, clipping and the update."""
checks = Checks("train_step", points=10)


def _public_train_step_losses():
    torch.manual_seed(drawn(0))
    model = TinyLM(vocab_size=20, seq_len=6).to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    input_ids, attention_mask = seeded_randint(20, (4, 6), seed=1), torch.ones(4, 6, dtype=torch.long, device=DEVICE)
    # The loss scaled down: its gradients stay far below the clipping norm (1.0), so that this check is about the loop
    # alone (AdamW's steps don't depend on the loss's scale); the clipping has its own check below.
    with replaced(lm_loss=lambda *inputs: stand_in_loss(*inputs) / 100):  # see `replaced`
        return [train_step(model, optimizer, input_ids, attention_mask) for _ in range(20)]


def _public_train_step_learns(losses):
    assert all(isinstance(loss, float) for loss in losses), (
        f"train_step should return a float, not {getattr(losses[0], 'type_name', type(losses[0]).__name__)}")
    assert losses[-1] < 0.8 * losses[0], (
        f"20 steps on one batch should lower the loss by a fifth at least; it went from {losses[0]:.4f} to {losses[-1]:.4f}")


checks.check("returns a float, and repeated steps lower the loss", 2, _public_train_step_losses, _public_train_step_learns)


class _TableLM(nn.Module):
    """A stand-in language model for 3 tokens: the logits after each token are that token's row of a learned table."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.tensor([[0.5, -0.2, 0.1], [0.0, 0.3, -0.4], [0.2, 0.1, 0.0]]))

    def forward(self, input_ids):
        return self.table[input_ids]


def _linear_loss(logits, input_ids, attention_mask):
    """A stand-in for lm_loss whose gradient is the same whatever the parameters: minus half the sum of the logits
    of the next tokens. The more tokens in the batch, the larger the gradient."""
    return -0.5 * logits[:, :-1].gather(-1, input_ids[:, 1:, None]).sum()


def _public_train_step_two_steps():
    model = _TableLM().to(DEVICE)
    if Checks.salt:  # while graded, the run on drawn inputs starts from another table
        with torch.no_grad():
            model.table.add_(seeded_randn(3, 3, seed=157, scale=0.3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    huge = torch.tensor([[0, 1, 0, 1, 0, 1]] * 4, device=DEVICE)  # 20 targets: a gradient of norm 7.2
    small = torch.tensor([[2, 2, 1]], device=DEVICE)              # 2 targets: a gradient of norm 0.71
    with replaced(lm_loss=_linear_loss):  # see `replaced`
        train_step(model, optimizer, huge, torch.ones_like(huge))
        after_first = model.table.detach().clone()
        train_step(model, optimizer, small, torch.ones_like(small))
    return {"after_first": after_first, "after_second": model.table.detach().clone()}


def _public_train_step_clipped(data):
    expect_numbers(data["after_first"], [[0.5, -0.11679, 0.1], [0.05547, 0.3, -0.4], [0.2, 0.1, 0.0]], [
        ("the gradients are not clipped before the optimizer step: with a gradient of norm 7.2, one SGD step of "
         "lr 0.1 should move the parameters by 0.1 in all (a gradient clipped to norm 1.0)",
         [[0.5, 0.4, 0.1], [0.4, 0.3, -0.4], [0.2, 0.1, 0.0]]),
        ("the gradients are clipped one value at a time: clip the norm of the gradient of all the parameters "
         "together", [[0.5, -0.1, 0.1], [0.1, 0.3, -0.4], [0.2, 0.1, 0.0]]),
        ("the parameters did not change: the optimizer makes no step, or the gradients are reset after backward()",
         [[0.5, -0.2, 0.1], [0.0, 0.3, -0.4], [0.2, 0.1, 0.0]]),
    ], what="the parameters after one step on a batch with a huge gradient")


def _public_train_step_reset(data):
    expect_numbers(data["after_second"] - data["after_first"], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.05, 0.05]], [
        ("the gradients of the previous step are not reset: the second step still follows the gradient of the "
         "first batch", [[0.0, 0.06794, 0.0], [0.04529, 0.0, 0.0], [0.0, 0.04082, 0.04082]]),
        ("the gradients of the previous step are not reset (and not clipped): the second step still follows the "
         "gradient of the first batch", [[0.0, 0.6, 0.0], [0.4, 0.0, 0.0], [0.0, 0.05, 0.05]]),
        ("the parameters did not change: the optimizer makes no step, or the gradients are reset after backward()",
         [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    ], what="the change of the parameters during a second step, on a batch with a small gradient")


checks.check("one step on a batch with a huge gradient: the gradient is clipped at norm 1.0", 2,
             _public_train_step_two_steps, _public_train_step_clipped)
checks.check("the next step starts from fresh gradients", 2, _public_train_step_two_steps, _public_train_step_reset)
### BEGIN HIDDEN TESTS
class _StepLM(nn.Module):
    """A stand-in language model: each position's logits from its token and the tokens before it."""

    def __init__(self, vocab_size=50, hidden_size=16):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids):
        x = torch.tanh(self.embedding(input_ids)).cumsum(dim=1)
        return self.head(x)


def _step_loss(logits, input_ids, attention_mask):
    """A stand-in for lm_loss (not a next-token loss: any differentiable loss will do to check a training step)."""
    losses = F.cross_entropy(logits.flatten(0, 1), input_ids.flatten(), reduction="none")
    return (losses * attention_mask.flatten()).sum() / attention_mask.sum()


def _train_step_setup(seed):
    torch.manual_seed(drawn(seed))
    model = _StepLM()
    with torch.no_grad():  # larger weights: the gradient norm is well above 1, so clipping matters
        for parameter in model.parameters():
            parameter.mul_(3.0)
    input_ids = seeded_randint(50, (3, 7), seed + 1)
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    attention_mask[1, 4:] = 0
    return model.to(DEVICE), input_ids, attention_mask.to(DEVICE)


def _stale_gradients(model, seed):
    return [seeded_randn(*p.shape, seed=seed + i, scale=5.0) for i, p in enumerate(model.parameters())]


def _student_step(seed, stale=True):
    """train_step on the stand-in model, with gradients left over from a previous step; the parameters after it, and the loss."""
    model, input_ids, attention_mask = _train_step_setup(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for parameter, gradient in zip(model.parameters(), _stale_gradients(model, seed)):
        parameter.grad = gradient.clone() if stale else torch.zeros_like(gradient)
    with replaced(lm_loss=_step_loss):
        loss = train_step(model, optimizer, input_ids, attention_mask)
    return list(model.parameters()), loss


checks.check("returns the loss of the batch, computed before the update", 2, lambda: _student_step(150, stale=False)[1],
             "verdict_train_step_loss")
checks.check("one step: zero_grad, backward, clip at 1.0, step", 1, lambda: _student_step(160)[0], "verdict_train_step_update_160")
checks.check("the update is the same on another batch", 1, lambda: _student_step(170)[0], "verdict_train_step_update_170")
### END HIDDEN TESTS
checks.score()

# %% [markdown]
# ### The data pipeline
#
# Training reads the text through a small pipeline, given below (you don't need to change it):
# 1. **Tokenize once.** `tokenize_once` tokenizes the lines with `datasets.map(..., batched=True)`, before training, instead of at every step. It joins the tokens of the lines into one stream and cuts it into blocks of `seq_len` tokens. Consecutive blocks share one token (the last token of a block is the first of the next), so that every token of the stream but the very first is a target exactly once: `lm_loss` predicts each token from the ones before it, and the first token of a block has nothing before it.
# 2. **Batch.** A PyTorch `DataLoader` draws batches of blocks (shuffled for training). Its `collate` function pads the shorter blocks with the EOS token, and builds the `attention_mask`: 1 for real tokens, 0 for padding, which your `lm_loss` ignores.
# 3. **Train and validate.** `train` calls your `train_step` on one batch after another, with a progress bar. Every `validate_every` steps, `evaluate` computes the validation loss on the first `validation_batches` batches of the validation set only, so that validating stays quick. Both losses, and their perplexities ($e^{\text{loss}}$), go to TensorBoard.
# 4. **Checkpoint.** `save_checkpoint` saves the model's weights with the configuration that builds it; `load_checkpoint` builds the model again from the file.

# %% nbgrader={"grade": false, "grade_id": "training_pipeline", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
import functools
import itertools

from torch.utils.data import DataLoader
from tqdm.auto import tqdm


def tokenize_once(lines, tokenizer, seq_len, lines_per_group=1000):
    """Tokenizes a Dataset of text lines once, and cuts their tokens into blocks of at most seq_len tokens.

    The tokens of each group of `lines_per_group` lines are joined into one stream and cut into blocks that
    overlap by one token: the targets of the blocks (every token but their first) cover the stream once,
    all but its very first token. The last block of a group may be shorter. Returns a Dataset of "input_ids".
    """
    def to_blocks(batch):
        stream = list(itertools.chain.from_iterable(tokenizer(batch["text"], verbose=False)["input_ids"]))
        starts = range(0, max(len(stream) - 1, 0), seq_len - 1)
        return {"input_ids": [stream[start:start + seq_len] for start in starts]}

    return lines.map(to_blocks, batched=True, batch_size=lines_per_group, remove_columns=lines.column_names)


def collate(examples, pad_id):
    """A batch of blocks, right-padded with pad_id: input_ids (B, T), and attention_mask (B, T), 0 on padding."""
    length = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = torch.tensor(example["input_ids"], dtype=torch.long)
        attention_mask[row, :n] = 1
    return input_ids, attention_mask


def make_loader(blocks, batch_size, pad_id, shuffle=False):
    """A DataLoader of (input_ids, attention_mask) batches over a Dataset of blocks."""
    return DataLoader(blocks, batch_size=batch_size, shuffle=shuffle, collate_fn=functools.partial(collate, pad_id=pad_id))


def perplexity(loss):
    return math.exp(min(loss, 50.0))  # capped: a diverging loss should not crash the logging


@torch.no_grad()
def evaluate(model, loader, max_batches):
    """The loss per target token over the first `max_batches` batches of `loader` (a bounded validation)."""
    model.eval()
    total_loss, total_targets = 0.0, 0
    batches = itertools.islice(loader, max_batches)
    for input_ids, attention_mask in tqdm(batches, total=min(max_batches, len(loader)), desc="validation",
                                          leave=False, disable=GRADING):
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        targets = int(attention_mask[:, 1:].sum())
        total_loss += lm_loss(model(input_ids), input_ids, attention_mask).item() * targets
        total_targets += targets
    model.train()
    return total_loss / total_targets if total_targets else float("nan")


def train(model, optimizer, train_loader, validation_loader, steps, validate_every, validation_batches, writer):
    """Runs `steps` training steps (your train_step), epoch after epoch over train_loader, and validates every
    `validate_every` steps and at the end. Logs losses and perplexities to TensorBoard; returns the losses."""
    history = {"train": [], "validation": []}
    model.train()
    batches = itertools.chain.from_iterable(itertools.repeat(train_loader))  # reshuffled at every epoch
    progress = tqdm(range(1, steps + 1), desc="training", disable=GRADING)
    for step in progress:
        input_ids, attention_mask = (tensor.to(device) for tensor in next(batches))
        loss = train_step(model, optimizer, input_ids, attention_mask)
        history["train"].append((step, loss))
        writer.add_scalar("loss/train", loss, step)
        writer.add_scalar("perplexity/train", perplexity(loss), step)
        if step % validate_every == 0 or step == steps:
            validation_loss = evaluate(model, validation_loader, validation_batches)
            history["validation"].append((step, validation_loss))
            writer.add_scalar("loss/validation", validation_loss, step)
            writer.add_scalar("perplexity/validation", perplexity(validation_loss), step)
            progress.set_postfix(loss=f"{loss:.3f}", validation_loss=f"{validation_loss:.3f}")
            tqdm.write(f"step {step}: train loss {loss:.3f} (perplexity {perplexity(loss):.1f}), "
                       f"validation loss {validation_loss:.3f} (perplexity {perplexity(validation_loss):.1f})")
    writer.flush()
    return history


def save_checkpoint(model, config, path):
    """Saves the model's weights, with the configuration (the Transformer's arguments) that builds it."""
    torch.save({"config": config, "model": model.state_dict()}, path)


def load_checkpoint(path):
    """A Transformer built from a checkpoint's configuration, with its weights, on `device`."""
    checkpoint = torch.load(path, map_location=device)
    model = Transformer(**checkpoint["config"]).to(device)
    model.load_state_dict(checkpoint["model"])
    return model


# %% [markdown]
# ### TensorBoard
#
# TensorBoard shows the training curves live: the loss and the perplexity, on the training batches and on the validation batches. In Colab it opens below; refresh it during training.
#
# Each training run writes to a folder of its own, `runs/<date>-<time>-<configuration>-<what it trains on>` (for example `runs/20260315-141502-gpu-overfit_one_batch`), so that two runs never merge into one curve. **To compare runs**, TensorBoard lists them in its left panel, one colour each: tick the runs you want to see side by side, or type part of their names in the filter box above the list (`n_examples`, say). Hovering over a curve shows the value of every run at that step. To forget a run, delete its folder (in Colab, in the Files panel on the left) and refresh TensorBoard.

# %% nbgrader={"grade": false, "grade_id": "demo_tensorboard", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
import time

from torch.utils.tensorboard import SummaryWriter


def run_writer(name, root="runs"):
    """A TensorBoard writer for one training run, in a folder of its own: <root>/<date>-<time>-<name>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = os.path.join(root, f"{stamp}-{name}"), 1
    while os.path.exists(folder):  # another run started in the same second
        n += 1
        folder = os.path.join(root, f"{stamp}-{name}-{n}")
    os.makedirs(folder)
    return SummaryWriter(folder)


if IN_COLAB:
    # %load_ext tensorboard
    # %tensorboard --logdir runs
elif not GRADING:
    print("To watch the curves, run `tensorboard --logdir runs` in a terminal next to the notebook, "
          "and open http://localhost:6006.")


# %% [markdown]
# ### Which model, on which machine
#
# Training costs about $6 \cdot N$ floating-point operations (FLOPs) per token, where $N$ is the number of parameters the token goes through (the forward pass is $2N$, the backward pass twice that). With GPT-2's vocabulary of 50,257 tokens, most of $N$ is the output layer: $256 \times 50257 \approx 12.9$ million parameters for a hidden size of 256. So the notebook picks a run that fits the machine it runs on: `training_config(device, offline)` below returns it, and the cell after it prints which one it chose and why.
#
# | configuration | chosen when | model | quick demo (`"overfit_one_batch"`) | its time |
# |---|---|---|---|---|
# | `"gpu"` | there is a GPU | hidden 256, 3 layers, 4 heads, `seq_len` 128 | batches of 32, 1,000 steps, lr 1e-4 | about 3 min on a Colab T4 (an estimate) |
# | `"cpu"` | no GPU | hidden 128, 2 layers, 4 heads, `seq_len` 64 | batches of 8, 50 steps, lr 3e-3 | about 1.5 min on 2 CPU cores, up to 5 min when they are busy (measured) |
# | `"offline"` | offline, or while the notebook is graded | hidden 64, 2 layers, 4 heads, `seq_len` 64, a 512-token tokenizer | batches of 8, 30 steps, lr 3e-3 | about 10 s on 2 CPU cores (measured) |
#
# Where the times come from:
# - **CPU (measured).** On the 2 CPU cores of a cloud server (AMD EPYC), a step of the `"cpu"` configuration took about 1.5 s (1.5 to 1.7 s), and its 50 steps with their validations 73 to 75 s. On the same cores while other jobs ran, a step took up to 6 s: about 5 minutes for the run. The `"gpu"` configuration took 5 to 25 s a step there: its 1,000 steps would take 1.5 to 7 hours, which is why a CPU gets the smaller model. A recent laptop is often faster than that.
# - **Colab T4 GPU (an estimate, not measured).** A step of the `"gpu"` configuration goes through about $N \approx 15$ million parameters (12.9 million in the output layer, 2.4 million in the 3 blocks; the embeddings are only looked up) with $32 \times 128 = 4096$ tokens: $6 \times 15 \cdot 10^6 \times 4096 \approx 0.37$ TFLOP. This notebook trains in float32, where a T4 peaks at 8.1 TFLOP/s (its 65 TFLOP/s are for float16, with mixed precision, which we don't use here). At a realistic 30% of the peak, about 2.4 TFLOP/s, a step takes about 0.15 s, and the 1,000 steps of the demo about 2.5 minutes, plus the validations: about 3 minutes.
#
# Your machine may be faster or slower: just before training, the notebook times a few steps of your own `train_step` and prints how long the whole run should take.

# %% nbgrader={"grade": false, "grade_id": "demo_training_config", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
def training_config(device, offline=False):
    """The training run that fits the machine: a dict with its `name`, `why` it was chosen, the `model`'s arguments
    (all but the vocabulary size), the run's settings, and the `estimated_seconds_per_step` of the table above.
    `device`: "cuda" or "cpu"; `offline`: the small local sample and its 512-token tokenizer (and while graded)."""
    if offline:
        return dict(name="offline", why="the notebook runs offline (or is being graded): a tiny model on the small "
                    "local sample, which trains in seconds on a CPU",
                    model=dict(hidden_size=64, num_layers=2, num_heads=4, dropout=0.1, seq_len=64),
                    batch_size=8, learning_rate=3e-3, overfit_steps=30, n_examples=10_000, validate_every=10,
                    validation_batches=2, estimated_seconds_per_step=0.3)
    if str(device).startswith("cuda"):
        return dict(name="gpu", why="there is a GPU: the full model",
                    model=dict(hidden_size=256, num_layers=3, num_heads=4, dropout=0.1, seq_len=128),
                    batch_size=32, learning_rate=1e-4, overfit_steps=1000, n_examples=10_000, validate_every=100,
                    validation_batches=20, estimated_seconds_per_step=0.15)
    return dict(name="cpu", why="there is no GPU: a smaller model (hidden 128, 2 layers, seq_len 64), smaller batches "
                "and fewer steps, so that training takes minutes (the GPU configuration would take hours on a CPU)",
                model=dict(hidden_size=128, num_layers=2, num_heads=4, dropout=0.1, seq_len=64),
                batch_size=8, learning_rate=3e-3, overfit_steps=50, n_examples=1_000, validate_every=25,
                validation_batches=5, estimated_seconds_per_step=1.5)


run_config = training_config(device, offline=OFFLINE)
print(f"Training configuration \"{run_config['name']}\", because {run_config['why']}.")

# %% [markdown]
# ### Training
#
# Choose what to train on:
# - `"overfit_one_batch"`, the quick demo: the model sees the same batch again and again, and memorizes it. Its training loss goes down fast, but its validation loss doesn't: it learns that one batch, not the language. Minutes, on a CPU or a GPU (see the table above).
# - `"n_examples"`: the model learns from the first `N_EXAMPLES` lines of WikiText-103 (by default, `None`: 10,000 on a GPU, 1,000 on a CPU), for `EPOCHS` epochs. Its validation loss goes down too. Try it when you have more time: the more lines and epochs, the longer it takes, and the better the model. The cell after the next one tells you how long it should take.
#
# While the notebook is graded, or offline, the model and the data are much smaller (the `"offline"` configuration), so that training takes seconds on a CPU. While it is graded, it always runs the quick demo, whatever you chose.

# %%
TRAINING = "overfit_one_batch"  # or "n_examples"
N_EXAMPLES = None  # lines of WikiText-103 for "n_examples"; None: the configuration's (10,000 on a GPU, 1,000 on a CPU)
EPOCHS = 2

# %% nbgrader={"grade": false, "grade_id": "demo_training_data", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
if GRADING:
    TRAINING = "overfit_one_batch"
seq_len, batch_size, learning_rate = run_config["model"]["seq_len"], run_config["batch_size"], run_config["learning_rate"]
overfit_steps, validate_every, validation_batches = (run_config["overfit_steps"], run_config["validate_every"],
                                                     run_config["validation_batches"])
config = dict(vocab_size=len(tokenizer), **run_config["model"])  # the Transformer's arguments

# Tokenize once: the first lines of the training set, and the validation set.
train_size = min(len(dataset["train"]), 1000 if TRAINING == "overfit_one_batch" else N_EXAMPLES or run_config["n_examples"])
train_blocks = tokenize_once(dataset["train"].select(range(train_size)), tokenizer, seq_len)
validation_blocks = tokenize_once(dataset["validation"], tokenizer, seq_len)
if TRAINING == "overfit_one_batch":
    train_blocks = train_blocks.select(range(min(batch_size, len(train_blocks))))  # one batch

train_loader = make_loader(train_blocks, batch_size, tokenizer.pad_token_id, shuffle=True)
validation_loader = make_loader(validation_blocks, batch_size, tokenizer.pad_token_id)
steps = overfit_steps if TRAINING == "overfit_one_batch" else EPOCHS * len(train_loader)
print(f"{TRAINING}: {len(train_blocks)} training blocks of up to {seq_len} tokens, {steps} steps; validation on "
      f"{min(validation_batches, len(validation_loader))} of the {len(validation_loader)} validation batches "
      f"every {validate_every} steps.")


# %% [markdown]
# How long will it take? The cell below times 3 training steps (your `train_step`, after a warm-up step) of a throwaway model of the chosen configuration, on one batch, and multiplies. The validations count too: each validation batch is a forward pass only, about a third of a training step.

# %% nbgrader={"grade": false, "grade_id": "demo_time_estimate", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
def seconds_per_step(config, learning_rate, loader, steps=3):
    """The mean time of `steps` training steps (train_step) of a new model built from `config`, on `device`,
    on the first batch of `loader`, after one warm-up step (the first step is slower)."""
    model = Transformer(**config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    input_ids, attention_mask = (tensor.to(device) for tensor in next(iter(loader)))
    train_step(model, optimizer, input_ids, attention_mask)
    if device == "cuda":
        torch.cuda.synchronize()  # the GPU runs asynchronously: wait for it before reading the clock
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, input_ids, attention_mask)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def expected_seconds(step_seconds, steps, validate_every, validation_batches):
    """The time of `steps` training steps and of their validations (every `validate_every` steps and at the end,
    `validation_batches` batches each, a forward pass that costs about a third of a training step)."""
    validations = math.ceil(steps / validate_every)
    return step_seconds * (steps + validations * validation_batches / 3)


def in_words(seconds):
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


if not GRADING:  # while graded, the run takes seconds, and nobody reads the estimate
    batches = min(validation_batches, len(validation_loader))
    estimate = expected_seconds(run_config["estimated_seconds_per_step"], steps, validate_every, batches)
    measured = seconds_per_step(config, learning_rate, train_loader)
    print(f"One training step takes {measured:.2f} s here ({device}): the {steps} steps and their validations should "
          f"take about {in_words(expected_seconds(measured, steps, validate_every, batches))} (the table above says "
          f"about {in_words(estimate)} for the \"{run_config['name']}\" configuration).")

# %% nbgrader={"grade": false, "grade_id": "demo_training_run", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
torch.manual_seed(0)
transformer = Transformer(**config).to(device)
optimizer = torch.optim.AdamW(transformer.parameters(), lr=learning_rate)
writer = run_writer(f"{run_config['name']}-{TRAINING}")  # a TensorBoard folder of its own for this run
if not GRADING:
    print(f"TensorBoard: this run writes to {writer.log_dir}")
history = train(transformer, optimizer, train_loader, validation_loader, steps, validate_every, validation_batches, writer)
writer.close()

# %% [markdown]
# Save the model: its weights and its configuration.

# %% nbgrader={"grade": false, "grade_id": "demo_save_checkpoint", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
save_checkpoint(transformer, config, "transformer.pt")


# %% [markdown]
# ## Generate text (10 points)
#
# Greedy decoding generates text one token at a time: at each step, feed the sequence to the model, take the logits of the **last** position, pick the most likely token (`argmax`), and append it to the sequence.
#
# Complete `decode`. It must:
# - work for a batch of any size: `input_ids` has shape (B, T), and the result (B, T + `max_new_tokens`);
# - put the model in eval mode (`model.eval()`), so that dropout is off, and compute no gradients (`@torch.no_grad()`);
# - crop the context to the last `model.seq_len` tokens before each forward pass: the model has no position embedding beyond `seq_len`.

# %% nbgrader={"grade": false, "grade_id": "decode", "locked": false, "schema_version": 3, "solution": true, "task": false}
@torch.no_grad()
def decode(model, input_ids, max_new_tokens=32):
    """Greedy generation: returns input_ids followed by max_new_tokens generated tokens, shape (B, T + max_new_tokens)."""
    ### BEGIN SOLUTION
    model.eval()                                              # no dropout while generating
    for _ in range(max_new_tokens):
        context = input_ids[:, -model.seq_len:]               # (B, <= seq_len): crop the context
        logits = model(context)                               # (B, T, V)
        next_ids = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1): the most likely next token
        input_ids = torch.cat((input_ids, next_ids), dim=1)   # (B, T + 1)
    return input_ids
    ### END SOLUTION


# %% tags=["grader-only"]
# Grader-only: greedy decoding done right, to judge decode's.
def _ref_decode(model, input_ids, max_new_tokens, position=-1):
    """Greedy decoding (`position`: whose logits choose the next token; 0 reproduces that mistake)."""
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids[:, -model.seq_len:])
            input_ids = torch.cat([input_ids, logits[:, position].argmax(-1, keepdim=True)], dim=1)
    return input_ids


def verdict_decode_greedy(outputs):
    model, prompt = _decode_model(180), seeded_randint(50, (1, 3), seed=181)
    expect_tensor(outputs[0], (1, 7))
    assert torch.equal(outputs[0], outputs[1]), (
        "decode gave different tokens on two calls: greedy decoding picks the argmax, it does not sample")
    with torch.no_grad():
        first_position = model(prompt)[:, 0].argmax(-1, keepdim=True).expand(-1, 4)
    _expect_values(outputs[0], _ref_decode(model, prompt, 4), {
        "the next token should be the argmax of the logits of the last position, not of the first":
            torch.cat([prompt, first_position], 1),
    }, what="generated tokens")


def verdict_decode_batch(data):
    expect_tensor(data["batch"], (3, 7), "the output for a batch of 3 prompts")
    assert torch.equal(data["again"], data["alone"][0]), (
        "not checked: decode gives different tokens on two calls (see the greedy check)")
    for i, alone in enumerate(data["alone"]):
        assert torch.equal(data["batch"][i:i + 1], alone), (
            f"prompt {i} of a batch of 3 prompts gets other tokens than when it is decoded alone: "
            "each prompt of a batch should be decoded as it would be alone")


def verdict_decode_eval_mode(data):
    assert not any(data["grad_enabled"]), "decode computes gradients, which generation doesn't need (and which cost memory): turn gradient tracking off in decode"
    expect_tensor(data["train"], (1, 7))
    assert not any(data["training"]), (
        "the model was in training mode while decode ran it: decode should put the model in eval mode, so that "
        "dropout is off while it generates")
    assert torch.equal(data["train"], data["eval"]), (
        "a model left in training mode generated other tokens than the same model in eval mode: "
        "decode should put the model in eval mode, so that dropout is off while it generates")


def verdict_decode_crop(data):
    output, model, prompt = data["output"], _decode_model(210), seeded_randint(50, (1, 6), seed=211)
    expect_tensor(output, (1, 13), "the output (6 tokens of prompt, 7 generated, with seq_len=8)")
    assert torch.equal(output, data["again"]), "not checked: decode gives different tokens on two calls (see the greedy check)"
    for k, alone in enumerate(data["alone"]):
        assert torch.equal(output[:, k + 8], alone[:, -1]), (
            f"token {k + 9} should be the one generated from the 8 tokens before it (the model's seq_len): "
            "the context should be the last model.seq_len tokens")
    # The greedy check judges which position's logits are used: here either is fine, with the right context.
    assert any(torch.equal(output, _ref_decode(model, prompt, 7, position)) for position in (-1, 0)), (
        "wrong tokens generated past model.seq_len: the context should be the last model.seq_len tokens")


# %% nbgrader={"grade": true, "grade_id": "test_decode", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
# @title Checks of decode: run this cell after your answer (the lines it prints say what was checked)
"""Checks decode with a stand-in model: shapes, greedy choices, batches, eval mode and context cropping."""
checks = Checks("decode", points=10)


def _marked(logits):
    """The logits (B, T, V) of the stand-in models below, marked: position 0's always favour the last token of the
    vocabulary, which no later position picks; with gradients on, every later position favours the token before it,
    which it never picks otherwise. A decode that reads the first position's logits, or that computes gradients,
    then generates other tokens, whatever the model's weights (the checks but the gradients' run without them)."""
    marker = torch.zeros(logits.shape[1], logits.shape[2], device=logits.device)
    marker[0, -1], marker[1:, -1] = 20.0, -20.0
    marker[1:, -2] = 20.0 if torch.is_grad_enabled() else -20.0
    return logits + marker


class _PublicDecodeLM(nn.Module):
    """A stand-in language model (100 tokens) whose last logits depend on its whole context, up to seq_len=4 tokens.
    Its logits are small, so that its next-token distribution is nearly flat: a decode that samples almost never
    picks the most likely token, at any step."""

    def __init__(self, seed, dropout=0.0):
        super().__init__()
        torch.manual_seed(drawn(seed))
        self.seq_len = 4
        self.tokens, self.positions = nn.Embedding(100, 8), nn.Embedding(4, 8)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(8, 100)

    def forward(self, input_ids):
        T = input_ids.shape[1]
        if T > self.seq_len:
            raise IndexError(f"the model got {T} tokens, more than its seq_len of {self.seq_len}")
        x = self.dropout(self.tokens(input_ids) + self.positions(torch.arange(T, device=input_ids.device)))
        logits = 0.2 * self.head(torch.tanh(x.cumsum(dim=1)))
        # In training mode with dropout, the logits are also negated: dropout that always changes the tokens chosen,
        # so that a model left in training mode always shows (real dropout, on some inputs, would not).
        return _marked(-logits if self.training and self.dropout.p > 0 else logits)


def _public_decode_model(seed, dropout=0.0):
    return _PublicDecodeLM(seed, dropout).to(DEVICE).eval()


# The checks below but the last keep the context shorter than seq_len (4 tokens): only the last one is about cropping.
_decode_prompt = torch.tensor([[3, 7]], device=DEVICE)


@torch.no_grad()  # gradients off: the gradients have a check of their own (see _marked)
def _public_decode_output():
    torch.manual_seed(drawn(0))
    return decode(_public_decode_model(2), _decode_prompt.clone(), max_new_tokens=2)


def _public_decode_starts_with_prompt(output):
    expect_tensor(output, (1, 4))
    assert torch.equal(output[:, :2], _decode_prompt), "the output should start with the prompt"


checks.check("returns the prompt followed by max_new_tokens tokens", 1, _public_decode_output, _public_decode_starts_with_prompt)


@torch.no_grad()
def _public_decode_greedy():
    model, prompt, outputs = _public_decode_model(3), torch.tensor([[4, 1]], device=DEVICE), []
    for seed in (0, 1):
        torch.manual_seed(drawn(seed))
        outputs.append(decode(model, prompt.clone(), max_new_tokens=2))
    return outputs


def _public_decode_expected(outputs):
    expect_tensor(outputs[0], (1, 4))
    assert torch.equal(outputs[0], outputs[1]), (
        "decode gave different tokens on two calls: greedy decoding picks the most likely token, it does not sample")
    expect_numbers(outputs[0], [[4, 1, 21, 11]], [
        ("the next token should be the most likely one after the last position: its logits are those of the last "
         "position", [[4, 1, 99, 99]])], what="the prompt [[4, 1]] and the 2 tokens generated after it")


def _public_decode_deterministic(model, prompt, max_new_tokens):
    """decode's output, which must be the same on two calls for the checks that compare decode with itself."""
    output = decode(model, prompt.clone(), max_new_tokens=max_new_tokens)
    assert torch.equal(output, decode(model, prompt.clone(), max_new_tokens=max_new_tokens)), (
        "not checked: decode gives different tokens on two calls (see the greedy check above)")
    return output


@torch.no_grad()
def _public_decode_batch():
    model, prompts = _public_decode_model(4), torch.tensor([[1, 2], [7, 3], [5, 5]], device=DEVICE)
    alone = [] if drawn_run() else [_public_decode_deterministic(model, prompts[i:i + 1], 2) for i in range(3)]
    try:
        batch = decode(model, prompts.clone(), max_new_tokens=2)
    except RuntimeError as error:
        raise AssertionError(f"decode fails for a batch of 3 prompts ({error}): the tokens chosen at each step "
                             "should have shape (B, 1), one per prompt") from None
    return {"batch": batch, "alone": alone}


def _public_decode_batch_like_alone(data):
    expect_tensor(data["batch"], (3, 4), "the output for a batch of 3 prompts")
    for i, alone in enumerate(data["alone"]):
        assert torch.equal(data["batch"][i:i + 1], alone), (
            f"prompt {i} of a batch of 3 prompts gets other tokens than when it is decoded alone: "
            "each prompt of a batch should be decoded as it would be alone")


@torch.no_grad()
def _public_decode_train_and_eval():
    """decode with a model left in training mode, and in eval mode (with the drawn inputs, training mode only: see
    drawn_run). The stand-in's training mode always changes the tokens (see its forward)."""
    outputs = {}
    for mode in ("train",) if drawn_run() else ("train", "eval"):  # see drawn_run
        model = _public_decode_model(5, dropout=0.5).train(mode == "train")
        torch.manual_seed(drawn(0))
        # 1 token of prompt and 3 generated: the context stays shorter than seq_len=4, so that only the mode matters here
        outputs[mode] = decode(model, torch.tensor([[2]], device=DEVICE), max_new_tokens=3)
    return outputs


def _public_decode_same_as_eval(outputs):
    assert torch.equal(outputs["train"], outputs["eval"]), (
        "decode gives other tokens for a model left in training mode than for the same model in eval mode: "
        "dropout is still on while generating: decode should put the model in eval mode")


def _public_decode_gradients():
    """Whether gradients were on in each forward pass of decode, and the tokens it generated (which, while graded,
    must be the grader's for this check's points)."""
    model, grad_enabled = _public_decode_model(6), []
    hook = model.register_forward_hook(lambda module, inputs, output: grad_enabled.append(torch.is_grad_enabled()))
    try:
        with torch.enable_grad():
            output = decode(model, torch.tensor([[3, 3]], device=DEVICE), max_new_tokens=2)
    finally:
        hook.remove()
    return {"grad_enabled": grad_enabled, "output": output}


def _public_decode_no_gradients(data):
    grad_enabled = data["grad_enabled"]
    assert not any(grad_enabled), ("decode computes gradients, which generation doesn't need (and which cost memory): "
                                   "turn gradient tracking off in decode")


@torch.no_grad()
def _public_decode_long():
    model = _public_decode_model(12)
    try:
        output = _public_decode_deterministic(model, torch.tensor([[1, 8, 2, 9]], device=DEVICE), 3)  # seq_len=4
    except IndexError:
        raise AssertionError("decode fails once the sequence is longer than model.seq_len: the model has no "
                             "position embedding beyond it, so crop the context to its last model.seq_len tokens") from None
    expect_tensor(output, (1, 7))
    if drawn_run():  # see drawn_run
        return {"output": output}
    # the tokens generated from the last 4 tokens alone, one step at a time
    return {"output": output, "alone": [decode(model, output[:, k:k + 4].clone(), max_new_tokens=1) for k in range(3)]}


def _public_decode_cropped(data):
    for k, alone in enumerate(data["alone"]):
        assert torch.equal(data["output"][:, k + 4], alone[:, -1]), (
            f"token {k + 5} should be the one generated from the 4 tokens before it (the model's seq_len): "
            "the context should be the last model.seq_len tokens")
    try:  # the greedy check judges which position's logits choose the token: either one is fine here
        expect_numbers(data["output"], [[1, 8, 2, 9, 50, 50, 45]])
    except AssertionError:
        expect_numbers(data["output"], [[1, 8, 2, 9, 99, 99, 99]], what="the tokens generated past model.seq_len (the context should "
                                                         "be the last model.seq_len tokens)")


checks.check("greedy: the most likely token after the last position", 1, _public_decode_greedy, _public_decode_expected)
checks.check("each prompt of a batch is decoded as it would be alone", 1, _public_decode_batch,
             _public_decode_batch_like_alone)
checks.check("a model in training mode generates what it does in eval mode", 1, _public_decode_train_and_eval,
             _public_decode_same_as_eval)
checks.check("computes no gradients", 1, _public_decode_gradients, _public_decode_no_gradients)
checks.check("crops the context to model.seq_len", 1, _public_decode_long, _public_decode_cropped)
### BEGIN HIDDEN TESTS
class _DecodeLM(nn.Module):
    """A stand-in language model whose last logits depend on its whole context, up to seq_len tokens."""

    def __init__(self, vocab_size=50, hidden_size=16, seq_len=8, dropout=0.0):
        super().__init__()
        self.seq_len = seq_len
        self.tokens, self.positions = nn.Embedding(vocab_size, hidden_size), nn.Embedding(seq_len, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids):
        T = input_ids.shape[1]
        if T > self.seq_len:  # fail clearly, before a CUDA device-side assert would
            raise IndexError(f"the model got {T} tokens, more than its seq_len of {self.seq_len}")
        x = self.dropout(self.tokens(input_ids) + self.positions(torch.arange(T, device=input_ids.device)))
        logits = self.head(torch.tanh(x.cumsum(dim=1)))
        # In training mode with dropout, the logits are also negated: dropout that always changes the tokens chosen,
        # so that a model left in training mode always shows (real dropout, on some inputs, would not).
        return _marked(-logits if self.training and self.dropout.p > 0 else logits)


def _decode_model(seed, dropout=0.0):
    torch.manual_seed(drawn(seed))
    return _DecodeLM(dropout=dropout).to(DEVICE)


@torch.no_grad()  # gradients off: the gradients have a check of their own (see _marked)
def _probe_decode_greedy():
    model, prompt, outputs = _decode_model(180), seeded_randint(50, (1, 3), seed=181), []
    for seed in (0, 1):
        torch.manual_seed(drawn(seed))
        outputs.append(decode(model, prompt.clone(), max_new_tokens=4))
    return outputs


@torch.no_grad()
def _probe_decode_batch():
    model, prompts = _decode_model(190), seeded_randint(50, (3, 4), seed=191)
    if drawn_run():  # see drawn_run
        return {"batch": decode(model, prompts.clone(), max_new_tokens=3)}
    alone = [decode(model, prompts[i:i + 1].clone(), max_new_tokens=3) for i in range(3)]
    again = decode(model, prompts[:1].clone(), max_new_tokens=3)
    try:
        return {"batch": decode(model, prompts.clone(), max_new_tokens=3), "alone": alone, "again": again}
    except RuntimeError as error:
        raise AssertionError(f"decode fails for a batch of 3 prompts ({error}): the next tokens of a batch have "
                             "shape (B, 1), one token per prompt, appended to its own row") from None


def _probe_decode_eval_mode():
    """decode of a model left in training mode, and of the same model in eval mode: they should agree."""
    data = {"grad_enabled": [], "training": []}

    def seen(module, inputs, output):  # whether gradients and training mode were on in each forward pass
        data["grad_enabled"].append(torch.is_grad_enabled())
        data["training"].append(module.training)

    for mode in ("train",) if drawn_run() else ("train", "eval"):  # see drawn_run
        model = _decode_model(200, dropout=0.5).train(mode == "train")
        hook = model.register_forward_hook(seen)
        try:
            with torch.enable_grad():
                torch.manual_seed(drawn(202))
                data[mode] = decode(model, seeded_randint(50, (1, 3), seed=201), max_new_tokens=4)
        finally:
            hook.remove()
    return data


@torch.no_grad()
def _probe_decode_crop():
    model = _decode_model(210)
    try:
        output = decode(model, seeded_randint(50, (1, 6), seed=211), max_new_tokens=7)
        if drawn_run():  # see drawn_run
            return {"output": output}
        alone = [decode(model, output[:, k:k + 8].clone(), max_new_tokens=1) for k in range(5)] if output.shape == (1, 13) else []
        again = decode(model, seeded_randint(50, (1, 6), seed=211), max_new_tokens=7)
        return {"output": output, "alone": alone, "again": again}
    except IndexError:
        raise AssertionError("decode fails once the sequence is longer than model.seq_len: "
                             "crop the context to the last model.seq_len tokens before each forward pass") from None


checks.check("greedy: appends the argmax of the last position's logits", 1, _probe_decode_greedy, "verdict_decode_greedy")
checks.check("works for a batch of several prompts", 1, _probe_decode_batch, "verdict_decode_batch")
checks.check("runs in eval mode without gradients", 1, _probe_decode_eval_mode, "verdict_decode_eval_mode")
checks.check("crops the context to model.seq_len, other inputs", 1, _probe_decode_crop, "verdict_decode_crop")
### END HIDDEN TESTS
checks.score()

# %% [markdown]
# ### Generation
#
# First, load the model back from its checkpoint: it generates exactly the same text as the model in memory.

# %% nbgrader={"grade": false, "grade_id": "demo_generation_checkpoint", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
restored = load_checkpoint("transformer.pt")
prompt_ids = tokenizer([" The"], return_tensors="pt")["input_ids"].to(device)
generated = decode(transformer, prompt_ids)
print("The model loaded from transformer.pt generates the same text:", torch.equal(decode(restored, prompt_ids), generated))
tokenizer.batch_decode(generated)

# %% [markdown]
# Now prompt the model with the first tokens of a training block. After `"overfit_one_batch"`, the model has memorized its batch: it should continue the prompt almost word for word. After `"n_examples"`, it has seen too many texts to recite them: it continues in its own words.

# %% nbgrader={"grade": false, "grade_id": "demo_generation_training_text", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
block = train_blocks[0]["input_ids"]
prompt_ids = torch.tensor([block[:8]], device=device)
print("training text:", repr(tokenizer.decode(block[:40])))
print("generated    :", repr(tokenizer.decode(decode(transformer, prompt_ids, max_new_tokens=32)[0])))

# %% [markdown]
# Try your own prompts: add a code cell below this one (+ Code) and decode a prompt of your own, as the next cell does with `" As with previous"`. The quick demo only memorized one batch, so expect odd text. Training with `"n_examples"` on more lines, for more epochs, gives better text, but takes longer: watch the validation loss in TensorBoard to see how far the model got.

# %% nbgrader={"grade": false, "grade_id": "demo_generation_prompt", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
prompt = " As with previous"
input_ids = tokenizer([prompt], return_tensors="pt")["input_ids"].to(device)
tokenizer.batch_decode(decode(transformer, input_ids))


# %% [markdown]
# ### Why greedy text repeats itself
#
# You will often see greedy decoding repeat itself, a word or a phrase again and again ("Valkyria Valkyria Valkyria …", or ", and the , and the …"). It is not a bug in your `decode`:
# - **The argmax is a deterministic function of the context.** Greedy decoding always picks the same token after the same context, and the model's prediction mostly depends on the last few tokens. Once the last few tokens are a repetition, the context after the next repetition looks the same, so the same token comes again.
# - **A loop, once entered, reinforces itself.** Every repetition adds more evidence, in the context, that the next token is the repeated one: attention finds it again and again, and the model grows more confident in it. Nothing ever pushes the decoding out of the loop.
# - **Small models put most of their probability on frequent tokens** ("the", ",", ".", "of", or a word their training batch was full of). With a model as small and as briefly trained as ours, the most likely token is often one of these, whatever the context.
#
# **Sampling** changes this: instead of the argmax, draw the next token at random from the model's distribution, so that the same context can be followed by different tokens, and a loop can be left. The *temperature* $\tau$ divides the logits before the softmax: $\tau < 1$ sharpens the distribution (closer to greedy), $\tau > 1$ flattens it (more varied, and more mistakes). *Top-k* sampling draws only among the $k$ most likely tokens, and *top-p* (nucleus) sampling among the smallest set of most likely tokens whose probabilities add up to $p$: both cut off the long tail of unlikely tokens, which keeps the text coherent. You implement these in the next practical work, on decoding (`pw3_decoding`).

# %% [markdown]
# # Bonus: visualize attentions
#
# Now that we understand the basic mechanisms of attention, we can look at the attention patterns of a pretrained BERT model (Devlin et al. 2018). Recall that BERT is an encoder-based transformer model: a stack of (bidirectional) self-attention blocks.
#
# The bonus downloads BERT from the Hugging Face Hub, so it is skipped while the notebook is graded or offline. `bert_attentions` keeps BERT's tokenizer and model to itself, so that your GPT tokenizer and model stay untouched.

# %% nbgrader={"grade": false, "grade_id": "demo_bonus_bert", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
def bert_attentions(text):
    """The attentions of every layer of BERT-base on `text`, and its tokens, special tokens [CLS] and [SEP] included."""
    from transformers import BertModel, BertTokenizer

    bert_tokenizer = BertTokenizer.from_pretrained("bert-base-uncased")
    bert_model = BertModel.from_pretrained("bert-base-uncased", output_attentions=True, attn_implementation="eager")
    inputs = bert_tokenizer(text, return_tensors="pt")  # adds [CLS] at the start and [SEP] at the end
    with torch.no_grad():
        outputs = bert_model(**inputs)
    return outputs.attentions, bert_tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])


attentions = None
if GRADING:
    print("Bonus skipped while the notebook is graded.")
elif OFFLINE:
    print("Bonus skipped: it downloads BERT from the Hugging Face Hub, which can't be reached here.")
else:
    try:
        attentions, bert_tokens = bert_attentions("I will go for a run and will jump into a lake.")
        print(bert_tokens)
        print(attentions[0].shape)  # the first layer's attentions
    except Exception as error:  # no network, or the Hub is down
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(f"Bonus skipped: BERT could not be loaded ({type(error).__name__}: {first_line})")

# %% [markdown]
# We extracted the attentions of every layer; above is the shape of the first layer's. The first dimension is the batch, the second one is the number of heads of the layer, and the last two dimensions are the sequence length, special tokens included. Since this is self-attention, the last two numbers are equal.
#
# We can now use a function from the [bertviz library](https://github.com/jessevig/bertviz) to plot all the heads.
#
# You'll see a dropdown menu to select a layer of the model (BERT-base has 12). You'll then see a color for every head of that layer (BERT-base has 12 heads per layer). By default all heads are shown: click on a color to turn that head on or off. It helps to start with a single head and look at the relation it learned. Hover over a word to see the attention weights that link it to all the others.
#
# **Question** Do you notice any interesting (linguistic) pattern? What do the special tokens [CLS] and [SEP] attend to?

# %% nbgrader={"grade": false, "grade_id": "demo_bonus_bertviz", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["demo"]
if attentions is not None:  # otherwise the cell above said why the bonus is skipped
    try:
        from bertviz import head_view
    except ImportError:
        print("Bonus skipped: bertviz is not installed (pip install bertviz).")
    else:
        head_view(attentions, tokens=bert_tokens)

# %% [markdown]
# # Check my work, and hand in
#
# The cell below runs the public checks of every exercise again, on your code as it is now, and sums them up: one line per exercise. Run it once you are done, after running the whole notebook (Runtime > Run all: it stops at the first cell that raises an error, such as an exercise you have not finished yet; fix that cell, or run the cells after it one by one). It gives no points, and it ends with how to hand in your notebook.

# %% nbgrader={"grade": false, "grade_id": "check_my_work", "locked": true, "schema_version": 3, "solution": false, "task": false}
check_my_work(["self_attention", "multi_head_attention", "causal_multi_head_attention", "CausalSelfAttention",
               "FeedForward", "Block", "Transformer", "lm_loss", "train_step", "decode"], grading=GRADING)
if not GRADING:
    print()
    print("To hand in: in Colab, File > Download > Download .ipynb (in Jupyter: File > Download). Hand in the file "
          "as it is downloaded, without renaming it (\"Copy of pw2_transformers.ipynb\" is fine too), and without "
          "copying your answers into another notebook: the grader needs the cells of this one.")
