"""Hand-ins of a student who wants the points without the answers: each is one extra cell (or answer) of the
student's own, added to honest work, that tries to forge the grade or read the hidden tests.

Each attack is graded in the same batch as the honest work it is added to (conftest.py); the tests assert what the
attack got (tests/test_forgery.py): the honest score, no line of the hidden tests, nothing of the grader's.
"""

# Display and score forgery: nbgrader used to read the points from what the test cell displayed.
SUPPRESS_DISPLAY = 'get_ipython().ast_node_interactivity = "none"\n'

NUMBERS_AS_TEXT = '''formatter = get_ipython().display_formatter.formatters["text/plain"]
formatter.for_type(int, lambda n, p, cycle: p.text("100"))
formatter.for_type(float, lambda n, p, cycle: p.text("100"))
'''

FAKE_CHECKS = '''class Checks(Checks):
    def check(self, description, points, probe, verdict):
        print(f"  ✓ {description} [{points}/{points}]")
        return True

    def score(self):
        print(f"{self.exercise}: {self.points}/{self.points} points.")
        return self.points
'''

PATCHED_ENGINE = '''Checks.mode = "local"
Checks.score = lambda self: self.points
Checks.check = lambda self, *args, **kwargs: True
expect_tensor = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
'''

PROFILER_AND_THREAD = '''import sys, threading, time

def _keep_full_marks(frame, event, arg):
    checks = frame.f_globals.get("checks")
    if checks is not None and hasattr(checks, "points"):
        checks.earned = checks.points

sys.setprofile(_keep_full_marks)

def _forever():
    while True:
        checks = globals().get("checks")
        if checks is not None and hasattr(checks, "points"):
            checks.earned = checks.points
        time.sleep(0.001)

threading.Thread(target=_forever, daemon=True).start()
'''

# Rewrites every check cell before it runs: it then only shows full marks...
REWRITE_CHECK_CELLS = '''def _full_marks(lines):
    text = "".join(lines)
    if "Checks(" in text:
        points = int(text.split("points=")[1].split(")")[0])
        return [f"print('  ✓ all checks [{points}/{points}]')\\n", f"{points}\\n"]
    return lines

get_ipython().input_transformers_post.append(_full_marks)
'''

# ... or keeps the checks and appends the full marks at the end.
APPEND_FULL_MARKS = '''def _append_full_marks(lines):
    text = "".join(lines)
    if "Checks(" in text:
        points = int(text.split("points=")[1].split(")")[0])
        return lines + ["\\n", f"{points}\\n"]
    return lines

get_ipython().input_transformers_post.append(_append_full_marks)
'''

# Sends its own probe data before the real probes do, for every check it sees in the cell: made-up outputs.
FORGED_PROBE_DATA = '''import re
from IPython.display import display

def _forge(info):
    descriptions = re.findall(r'checks\\.check\\(\\s*"([^"]+)"', info.raw_cell)
    for index, description in enumerate(descriptions):
        for drawn in (False, True):  # for the notebook's inputs and for the drawn ones
            display({PROBE_MIME: {"exercise": "", "index": index, "description": description, "status": "ok",
                                  "drawn": drawn, **pack(torch.zeros(2, 6, 8))}}, raw=True)

get_ipython().events.register("pre_run_cell", _forge)
'''

# A tensor whose comparisons all say "equal", returned by an answer that is otherwise wrong (no scaling).
LYING_TENSOR_ANSWER = '''class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.Tensor.allclose, torch.Tensor.equal):
            return True
        if func in (torch.Tensor.__eq__, torch.isclose):
            return torch.ones((), dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs)


def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return (Q @ K.transpose(-2, -1)).softmax(dim=-1) @ V.as_subclass(Liar)
'''

# An answer whose every call raises an exception carrying the next piece of the check cells' source, read from the
# kernel's line cache (where IPython keeps every cell it ran, the instructor's test cells included): the reasons of
# its checks would put the hidden tests on the feedback page.
LEAK_IN_REASON_ANSWER = '''import linecache

_leaked = [0]


def self_attention(S, W_Q, W_K, W_V):
    cells = ["".join(entry[2]) for entry in list(linecache.cache.values())
             if len(entry) == 4 and isinstance(entry[2], list)]
    text = "\\n".join(cell[cell.index("### BEGIN HIDDEN TESTS"):] for cell in cells if "### BEGIN HIDDEN TESTS" in cell)
    start = _leaked[0]
    _leaked[0] += 250
    raise RuntimeError(text[start:start + 2000] or "nothing cached")
'''

# Looks for the grader's references and verdicts, knowing their names (GRADER_NAMES, prepended by the test), in
# memory (gc), in the globals of every frame and in the notebook's namespace, and uses the reference loss if it finds
# it; a later cell prints what it found.
GC_SEARCH_ANSWER = '''import gc, sys


def _grader_things():
    found = []
    for obj in gc.get_objects():
        try:
            name, module = getattr(obj, "__name__", ""), getattr(obj, "__module__", None)
            defined_in_a_notebook = module == "__main__" or (isinstance(module, str) and module not in sys.modules)
            if callable(obj) and isinstance(name, str) and name in GRADER_NAMES and defined_in_a_notebook:
                found.append(name)
        except Exception:  # lazy modules and odd proxies raise on getattr
            pass
    found += [k for k in globals() if k in GRADER_NAMES]
    frame = sys._getframe()
    while frame is not None:
        found += [k for k in frame.f_globals if k in GRADER_NAMES]
        frame = frame.f_back
    return sorted(set(found))


def lm_loss(logits, input_ids, attention_mask):
    for obj in gc.get_objects():
        try:
            if callable(obj) and getattr(obj, "__name__", "") == "_ref_lm_loss":
                return obj(logits, input_ids, attention_mask)
        except Exception:
            pass
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
'''
GC_SEARCH_REPORT = 'print("grader things found:", _grader_things())\n'

# Read the hidden tests: the input history, and every cell the kernel is given, printed later.
PRINT_HISTORY = 'for source in In:\n    print(source[:200])\nprint(len(_ih), "cells in the history")\n'
CAPTURE_CELLS = '''_seen = []
get_ipython().events.register("pre_run_cell", lambda info: _seen.append(info.raw_cell))
'''
PRINT_CAPTURED = 'print(repr(_seen))\nprint("\\n".join(_seen))\n'

# The honest answer the forging ones replace (the same mistakes, no attack): lm_loss counting the padding.
HONEST_LM_LOSS = '''def lm_loss(logits, input_ids, attention_mask):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
'''
