"""Answers that take the grading kernel down, hang it or flood its messages, when (and only when) a check calls them.

Each is an honest answer (`answer`, the cell that defines `function`) with `function` wrapped: called by a check (a
`Checks._probe` frame on the stack), it first does the attack; called by the notebook's own examples, it is the honest
answer. So the exercise's check cell is where the kernel fails (tests/test_crash.py, tests/test_bounds.py), and the
tests compare the points with those of the same answers without the attack.
"""

import contextlib
import textwrap
from pathlib import Path

from coursekit import notebook_checks, sandbox

_CALLED_BY_A_CHECK = '''

def _called_by_a_check():
    import sys
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "_probe" and type(frame.f_locals.get("self")).__name__ == "Checks":
            return True
        frame = frame.f_back
    return False
'''


def when_checked(answer: str, function: str, attack: str) -> str:
    """`answer`, with `function` doing `attack` first whenever a check calls it."""
    return answer + _CALLED_BY_A_CHECK + f'''

_honest_{function} = {function}


def {function}(*args, **kwargs):
    if _called_by_a_check():
{textwrap.indent(attack, " " * 8)}
    return _honest_{function}(*args, **kwargs)
'''


# The kernel killed as the kernel's out-of-memory killer kills: SIGKILL, nothing to catch.
KILLED = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
# Memory really used up, as a generation loop that keeps every step's tensors does: 64 MiB written at a time until the
# sandbox's memory budget refuses more (RuntimeError from torch's allocator, or MemoryError).
EXHAUSTS_MEMORY = ("import torch\n_kept = []\nwhile True:\n    _kept.append(torch.ones(16 * 2**20))\n")
# The kernel exits at once, without Python's clean-up.
EXITS = "import os\nos._exit(1)\n"
# Ignores the check's alarm and the grader's interrupt, then loops: only killing the kernel stops it.
BLOCKS = ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
          "while True:\n    pass\n")


def raw_iopub(content: str, times: int = 1) -> str:
    """Code that sends, `times`, a display message whose content frame is the bytes `content` (a Python expression),
    signed with the kernel's key as a real message is, on the kernel's IOPub socket."""
    return f'''import json
_kernel = get_ipython().kernel
_content = {content}
for _ in range({times}):
    _frames = [json.dumps(_kernel.session.msg_header("display_data"), default=str).encode(),
               json.dumps(_kernel.get_parent(), default=str).encode(), b"{{}}", _content]
    _kernel.iopub_socket.send_multipart([b"display_data", b"<IDS|MSG>", _kernel.session.sign(_frames), *_frames])
'''


MIME = notebook_checks.PROBE_MIME
# A content frame that is not JSON: cut in the middle of a string.
MALFORMED = raw_iopub("b'{\"data\": {\"text/plain\": \"cut'")
# Probe data nested 50,000 lists deep (100 KB): json.loads recurses once per level.
NESTED = raw_iopub(f"b'{{\"data\": {{\"{MIME}\": ' + b'[' * 50_000 + b']' * 50_000 + b'}}, \"metadata\": {{}}}}'")
# Probe data of 3 million empty dicts (9 MB): json.loads builds 3 million objects (about 200 MB).
MANY_ITEMS = raw_iopub(f"b'{{\"data\": {{\"{MIME}\": [' + b'{{}},' * 3_000_000 + b'{{}}]}}, \"metadata\": {{}}}}'")
# One probe message of 200 MB (a string): more than a frame may hold.
HUGE = raw_iopub(f"b'{{\"data\": {{\"{MIME}\": \"' + b'x' * 200_000_000 + b'\"}}, \"metadata\": {{}}}}'")
# 300 probe messages of 20,000 empty dicts each (60 KB each, 18 MB in all): each within the bounds.
# 100 messages of 20 MB each (2 GB), sent as fast as the kernel can: more than the worker reads meanwhile.
FLOOD_OF_BIG_MESSAGES = raw_iopub(f"b'{{\"data\": {{\"{MIME}\": \"' + b'x' * 20_000_000 + b'\"}}, \"metadata\": {{}}}}'",
                                  times=100)
FLOOD = raw_iopub(f"b'{{\"data\": {{\"{MIME}\": [' + b'{{}},' * 20_000 + b'{{}}]}}, \"metadata\": {{}}}}'", times=300)


def sandbox_processes(workers: int = 8) -> list[int]:
    """The host's processes running as a grading kernel's uid (those of the first `workers` workers)."""
    uids = {sandbox.FIRST_UID + worker for worker in range(workers)}
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid in uids:
                found.append(int(entry.name))
    return found


def worker_memory(log: str, student: str) -> dict[str, float]:
    """The grading worker's memory (MB) before `student`'s hand-in and at most while it was graded, as the
    autograde log's section of that hand-in states it."""
    section = log.split(f"===== {student}: ", 1)[1].split("\n===== ", 1)[0]
    line = next(text for text in section.splitlines() if text.startswith("[coursekit] grading worker memory: "))
    numbers = [float(word) for word in line.replace(",", " ").split() if word.replace(".", "").isdigit()]
    return {"before": numbers[0], "peak": numbers[1], "after": numbers[2]}
