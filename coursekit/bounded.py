"""Bounds on what the grading worker reads from a student's kernel, and on how long it judges what it read.

Every byte the kernel sends is hostile (shared/notes/boundary.md). jupyter_client receives a whole message and parses
it with json.loads before the kit sees it: a nested or huge payload grew the grading worker by 1.8 GB. So the worker's
connection to the kernel is bounded before anything is parsed, and while it is parsed:

- the queue: ZMQ holds at most RECEIVE_QUEUE_MESSAGES messages for the worker (RCVHWM), so that a kernel sending
  faster than the worker reads fills its own memory, not the worker's;
- one frame: ZMQ's MAXMSGSIZE on every socket of the worker's kernel client (`BoundedKernelClient`): a larger frame is
  never received. ZMQ then cuts the connection for good (measured: no message arrives after it), which the channel
  sees on its socket's monitor and reports at once (`ConnectionCut`), rather than waiting for the cell's time-out;
- one message, all its frames together: over MAX_MESSAGE_BYTES it is refused unread;
- its JSON: the count of items and the depth of nesting are bounded before json.loads builds anything (`loads`).

A message over a bound raises `UnreadableMessage` where jupyter_client would have parsed it; the kit then costs the
exercise that was running (coursekit/kernel_failures.py), never the worker. Each message's size on the wire travels
with it (WIRE_BYTES), so that probe data counts whole (its JSON too) against the probe budgets (coursekit/scoring.py).

`within_seconds` bounds the time a verdict takes: a crafted answer could make one run for minutes.
"""

import ctypes
import json
import re
import signal
import threading

from queue import Empty

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from traitlets import Type

MiB = 2**20
# A 50 MB `print` is one message of 50 MB (ipykernel doesn't split its streams): it is read, then cut to 20,000
# characters (limit_output.py). Probes need a few KB, status and display messages less.
MAX_FRAME_BYTES = 64 * MiB
MAX_MESSAGE_BYTES = 72 * MiB
# Messages ZMQ may hold for the worker before it reads them (its default: 1,000, that is up to 64 GB of 64 MB frames).
# The rest wait in the kernel's own send queue, in the sandbox's memory, or are dropped when that is full.
RECEIVE_QUEUE_MESSAGES = 2
MAX_JSON_ITEMS = 100_000  # values, lists and dicts in one frame's JSON (a check's probe has a few hundred)
MAX_JSON_DEPTH = 64       # a probe's data is at most 9 levels deep (notebook_checks.unpack), a message's frame 4 more
WIRE_BYTES = "coursekit_wire_bytes"  # the key of a received message's size on the wire, all frames together

VERDICT_SECONDS = 10  # a verdict takes milliseconds on honest data


class UnreadableMessage(ValueError):
    """A message from the kernel that is over a bound, or not a message at all: its exercise is lost."""


class ConnectionCut(UnreadableMessage):
    """The connection to the kernel was cut: a frame over MAX_FRAME_BYTES, or the kernel went away (died)."""


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_INNERMOST = re.compile(rb"\[\]|\{\}")


def _deeper_than(data: bytes, depth: int) -> bool:
    """Whether lists and dicts nest more than `depth` levels deep in JSON `data` (brackets in strings don't count):
    each pass removes the innermost level, at the speed of a regular expression."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", data))
    for _ in range(depth):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def check_json(data: bytes, max_items: int = MAX_JSON_ITEMS, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raises UnreadableMessage unless JSON `data` holds at most `max_items` items, `max_depth` levels deep. Both are
    counted on the bytes, before anything is built: every item but the first is after a comma or an opening bracket.
    Commas and brackets in strings (a printed list) count only on a first, quick look."""
    opening = data.count(b"[") + data.count(b"{")
    if data.count(b",") + opening + 1 > max_items:
        outside_strings = _STRING.sub(b'""', data)
        opening = outside_strings.count(b"[") + outside_strings.count(b"{")
        if outside_strings.count(b",") + opening + 1 > max_items:
            raise UnreadableMessage(f"over {max_items:,} items of data in one message")
    if opening > max_depth and _deeper_than(data, max_depth):
        raise UnreadableMessage(f"data nested over {max_depth} levels deep")


def loads(data: bytes | str):
    """jupyter_client Session's unpacker, bounded: json.loads of `data` once check_json accepts it."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > MAX_FRAME_BYTES:
        raise UnreadableMessage(f"a message part of more than {MAX_FRAME_BYTES // MiB} MB")
    check_json(data)
    try:
        return json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError) as error:
        raise UnreadableMessage(f"not JSON ({type(error).__name__})") from None


class BoundedChannel(AsyncZMQSocketChannel):
    """A channel to the kernel that refuses a message over MAX_MESSAGE_BYTES (all its frames: ZMQ holds them already,
    they are only looked at, not copied) and parses the others with the session's (bounded) unpacker. Whatever fails to
    parse raises UnreadableMessage; a cut connection, ConnectionCut."""

    def __init__(self, socket, session, loop=None):
        super().__init__(socket, session, loop)
        self._monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    async def get_msg(self, timeout=None):
        if self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # a message is waiting (most calls): no need to poll
            return await self._recv()
        poller = zmq.asyncio.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        ready = dict(await poller.poll(None if timeout is None else int(timeout * 1000)))
        if self.socket in ready:
            return await self._recv()
        if self._monitor in ready:
            await self._monitor.recv_multipart()
            raise ConnectionCut(f"the connection was cut (a message part of more than {MAX_FRAME_BYTES // MiB} MB, "
                                "or the kernel went away)")
        raise Empty

    async def _recv(self, **kwargs):
        frames = await self.socket.recv_multipart(copy=False)
        size = sum(len(frame) for frame in frames)
        if size > MAX_MESSAGE_BYTES:
            raise UnreadableMessage(f"a message of more than {MAX_MESSAGE_BYTES // MiB} MB")
        try:
            _, parts = self.session.feed_identities([frame.bytes for frame in frames])
            message = self.session.deserialize(parts)
        except UnreadableMessage:
            raise
        except Exception as error:  # not signed, not JSON, not a message
            raise UnreadableMessage(f"not a message ({type(error).__name__})") from None
        message[WIRE_BYTES] = size
        return message

    def close(self):
        if self.socket is not None and not self.socket.closed:
            self.socket.disable_monitor()
        self._monitor.close(linger=0)
        super().close()


class BoundedKernelClient(AsyncKernelClient):
    """nbclient's kernel client, with every socket bounded (MAXMSGSIZE) and every message read by a BoundedChannel."""

    shell_channel_class = Type(BoundedChannel)
    iopub_channel_class = Type(BoundedChannel)
    stdin_channel_class = Type(BoundedChannel)
    control_channel_class = Type(BoundedChannel)

    def _context_default(self):
        context = super()._context_default()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)  # every socket made from it, before it connects
        context.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE_MESSAGES)
        return context


def bound_kernel_manager(km) -> None:
    """Makes `km`'s clients BoundedKernelClients, and its session's unpacker `loads`."""
    km.client_factory = BoundedKernelClient
    km.session.unpack = loads


# ------------------------------------------------------------------------------------------- time of a verdict

class _Overtime(BaseException):
    """Raised into a verdict past its time (a BaseException: the verdict's own `except Exception` can't keep it)."""


OVERTIME = "judging what your code returned took more than"  # how the reason of a verdict past its time starts


def _overtime_message(seconds: float) -> str:
    return (f"{OVERTIME} {seconds:g} seconds, so this check was stopped (is what your code returns unusually large?)")


def within_seconds(seconds: float, function, *args):
    """`function(*args)`, stopped after `seconds` with an AssertionError that says so (the reason the student reads).
    In the main thread, by SIGALRM; in another (a Dask worker's), by an exception raised asynchronously in it. Either
    stops Python code, not a single long call into C. The stop can't outlive the call: it is cancelled (or caught)
    before this returns."""
    try:
        if threading.current_thread() is threading.main_thread():
            return _by_alarm(seconds, function, args)
        return _by_async_exception(seconds, function, args)
    except _Overtime:
        raise AssertionError(_overtime_message(seconds)) from None


def _by_alarm(seconds, function, args):
    def stop(signum, frame):
        raise _Overtime()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _by_async_exception(seconds, function, args):
    thread_id, lock, state = ctypes.c_ulong(threading.get_ident()), threading.Lock(), {"done": False, "fired": False}

    def stop_thread():
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(thread_id, ctypes.py_object(_Overtime))

    timer = threading.Timer(seconds, stop_thread)
    timer.start()
    try:
        return function(*args)
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
        if state["fired"]:  # raised, or still pending: a pending one is withdrawn
            ctypes.pythonapi.PyThreadState_SetAsyncExc(thread_id, None)

