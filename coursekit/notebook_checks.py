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
