"""A pool of worker processes that outlives its workers: one that dies (killed, out of memory) is replaced, and
the others go on.

Each worker is a fresh (spawned) process that runs `start(worker, *start_args)` once, `worker` being its slot
(0 to jobs - 1; a replacement takes the slot of the worker it replaces), then `task(item)` for one item at a time.
An item whose worker died while it ran it is tried again on a fresh worker, up to `tries` times in all; after
that its result is `Lost`. (concurrent.futures' pool, by contrast, breaks when one worker dies, and fails every
item still to do.)
"""

import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait


@dataclass(frozen=True)
class Lost:
    """An item whose worker died every time it ran it."""
    deaths: int
    how: str  # how the last one died: "killed by SIGKILL", "exited with status 1"


@dataclass(frozen=True)
class Raised:
    """An item whose task raised an exception (the worker lived on)."""
    error: str


class WorkerStartError(RuntimeError):
    """A worker could not start (its `start` raised): no item could be done."""


def _die_with_parent() -> None:
    """Linux: this process is killed when the one that started it dies (a killed Dask worker leaves no grading
    process behind; the kernel, in bubblewrap's --die-with-parent, goes with it)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve(connection, worker: int, start: Callable | None, start_args: tuple, task: Callable) -> None:
    """A worker's life: start, then one item after another until told to stop (or the pool is gone)."""
    _die_with_parent()
    try:
        if start is not None:
            start(worker, *start_args)
    except BaseException:
        connection.send(("start failed", traceback.format_exc()))
        return
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        try:
            connection.send(("done", task(message[1])))
        except Exception as error:
            connection.send(("raised", f"{type(error).__name__}: {error}"))


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exited with status {exitcode}" if exitcode else "exited"


class _Worker:
    def __init__(self, context, worker: int, start, start_args, task):
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, worker, start, start_args, task),
                                       name=f"worker-{worker}")
        self.process.start()
        theirs.close()

    def stop(self, now: bool) -> None:
        if not now:
            try:
                self.connection.send(("stop",))
            except OSError:
                pass
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()


def run(items: Iterable, task: Callable, jobs: int, start: Callable | None = None, start_args: tuple = (),
        tries: int = 2, on_change: Callable | None = None, on_result: Callable | None = None) -> dict:
    """`task(item)` for every item, in `jobs` workers: {item: its result, Raised or Lost}.

    `on_result(item, result)` is called as soon as an item's result is known (so that it can be kept before the
    batch ends); `on_change(finished, running)` whenever an item is finished (`finished`: that item) or started
    (`finished`: None), `running` being the list of the items being done.
    """
    queue = deque((item, 0) for item in items)  # (item, how many workers died running it)
    jobs = max(1, min(jobs, len(queue)))
    context = get_context("spawn")  # fresh workers that import only what they need, whatever this process holds
    workers: dict[int, _Worker] = {}
    busy: dict[int, tuple] = {}
    results = {}
    failed = False
    try:
        while queue or busy:
            for worker in range(jobs):
                if queue and worker not in busy:
                    if worker not in workers:
                        workers[worker] = _Worker(context, worker, start, start_args, task)
                    busy[worker] = queue.popleft()
                    workers[worker].connection.send(("item", busy[worker][0]))
                    if on_change:
                        on_change(None, [item for item, _ in busy.values()])
            ready = wait([w for n in busy for w in (workers[n].connection, workers[n].process.sentinel)])
            for worker in [n for n in busy if workers[n].connection in ready or workers[n].process.sentinel in ready]:
                item, deaths = busy.pop(worker)
                try:
                    kind, value = workers[worker].connection.recv()
                except (EOFError, OSError):  # it died
                    dead = workers.pop(worker)
                    dead.stop(now=True)
                    if deaths + 1 < tries:
                        queue.appendleft((item, deaths + 1))
                        continue
                    kind, value = "lost", Lost(deaths + 1, _how_it_died(dead.process.exitcode))
                if kind == "start failed":
                    raise WorkerStartError(f"a worker could not start:\n{value}")
                results[item] = Raised(value) if kind == "raised" else value
                if on_result:
                    on_result(item, results[item])
                if on_change:
                    on_change(item, [running for running, _ in busy.values()])
    except BaseException:
        failed = True
        raise
    finally:
        for worker in workers.values():
            worker.stop(now=failed)
    return results


class Resident:
    """One worker process kept from one call to the next (a Dask worker's grading process): `do(item)` is
    `task(item)` in it. A worker that dies running an item is replaced and the item tried again, up to `tries`
    times in all; then the result is `Lost`."""

    def __init__(self, worker: int, task: Callable, start: Callable | None = None, start_args: tuple = (),
                 tries: int = 2):
        self.worker, self.task, self.start, self.start_args, self.tries = worker, task, start, start_args, tries
        self._context = get_context("spawn")
        self._worker: _Worker | None = None

    def do(self, item):
        how = "exited"
        for _ in range(self.tries):
            if self._worker is None:
                self._worker = _Worker(self._context, self.worker, self.start, self.start_args, self.task)
            try:
                self._worker.connection.send(("item", item))
                kind, value = self._worker.connection.recv()
            except (EOFError, OSError):  # it died
                dead, self._worker = self._worker, None
                dead.stop(now=True)
                how = _how_it_died(dead.process.exitcode)
                continue
            if kind == "start failed":
                self.close()
                raise WorkerStartError(f"a worker could not start:\n{value}")
            return Raised(value) if kind == "raised" else value
        return Lost(self.tries, how)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop(now=False)
            self._worker = None
