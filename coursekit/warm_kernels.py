"""Kernels that start warm: the modules every hand-in imports are imported once per grading worker, not once per kernel.

A grading kernel spends most of its CPU importing torch (about 2.5 s here) and the parts of it that a check loads
lazily (torch._dynamo, 1.5 s), for every hand-in. Here one process per grading worker, the zygote, imports them once;
each hand-in's kernel is a fork of it, so the imports cost it nothing (the pages are shared copy-on-write).

The sandbox is the same as a cold kernel's (coursekit/sandbox.py, as root only; elsewhere kernels start cold):
- the zygote is a fresh Python started by the worker with the sandbox's environment (nothing of the grader's), which
  imports the modules the assignment's graded cells import, then waits on a unix socket in a root-only folder of the
  build. It never runs student code and never reads a request: it forks on each connection, before reading anything,
  so it holds nothing of any hand-in, and each kernel starts from the same state;
- the kernelspec's launcher (root) starts the hand-in's bubblewrap sandbox exactly as for a cold kernel, but with a
  holder (`cat`, as the kernel's uid) where the kernel would be, then asks the zygote for a kernel in it;
- the zygote's child checks that the launcher is root and the holder runs as the kernel's uid in namespaces of its own
  (else it answers FAILED: never a kernel outside a sandbox), joins them (mount, PID, network, IPC, UTS, cgroup) and
  forks the kernel into the PID namespace. The kernel leaves the zygote's session, takes the launcher's stdout and
  stderr and closes every other file, goes to the hand-in's folder, takes the sandbox's limits, drops every capability
  (bounding, inheritable and ambient sets), its groups and root (to the worker's kernel uid), sets NoNewPrivs and (as
  a process exec'd as that uid is) dumpable, checks it all in /proc/self/status (it exits otherwise), draws new seeds
  for `random`, numpy and torch, says STARTED, then runs ipykernel. A launcher that does not hear STARTED starts the
  kernel cold;
- lifetimes: the child waits for the kernel and tells the launcher its exit status; the launcher then ends the holder.
  If the launcher is killed, the holder's stdin closes, the holder ends, bubblewrap ends and its PID namespace with
  every process in it, the kernel included. The zygote dies with its worker.

What the kernel can tell from a cold one: the modules are already imported, its pid is 3 (the holder is 2), its
command line is the zygote's, Python's hash seed is the zygote's (the same for every kernel of a worker: it protects
nothing here). Attacks on all of it: tests/test_sandbox.py (every kernel attack runs on cold and warm kernels).
Measured: a graded pw2 hand-in costs 5.0 to 5.7 s of CPU warm against 9.1 to 10.4 s cold (README, "Benchmark").
"""

import ctypes
import importlib
import json
import os
import random
import resource
import signal
import socket
import sys

LAUNCHER_TIMEOUT = 60  # seconds a zygote's child waits for its launcher's request
HOLDER = ["/bin/sh", "-c", "echo ready; exec cat"]  # the sandbox's first process: ends when its stdin closes
READY = b"ready\n"
STARTED, FAILED = b"started\n", b"failed\n"  # a zygote's child's first answer: the kernel runs, or did not start
# Parts of a module that it imports lazily, on first use, and that grading uses: torch imports torch._dynamo the first
# time a module runs on the "meta" device (1.5 s of CPU, measured).
LAZY_PARTS = {"torch": ["torch._dynamo"]}
ALWAYS = ["ipykernel.kernelapp"]

# prctl(2) and capget(2) numbers (linux/prctl.h, linux/capability.h)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CAPABILITY_VERSION_3 = 0x20080522
NAMESPACES = ["cgroup", "ipc", "uts", "net", "pid", "mnt"]  # mnt last: after it, /proc is the sandbox's
OPTIONAL_NAMESPACES = {"cgroup"}  # bubblewrap unshares it where it can (--unshare-cgroup-try); every other must differ


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _checked(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def modules_of(cells: list) -> list[str]:
    """The modules that the code cells `cells` import at their top level (absolute imports; IPython syntax allowed), in
    order, with the parts LAZY_PARTS names: what a zygote imports for an assignment."""
    import ast

    from .demo_cells import python_source

    found = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(python_source("".join(cell.get("source", ""))))
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append(node.module)
    found += [part for name in list(found) for part in LAZY_PARTS.get(name, [])]
    return list(dict.fromkeys(found))


# ----------------------------------------------------------------------------------------------- the zygote (as a script)

def serve(address: str, modules: list[str]) -> None:
    """The zygote: imports `modules` (those that fail are left out, said on stderr), listens on the unix socket
    `address` (its folder is root's, mode 0700), says READY on stdout, and forks a child for each connection."""
    _checked(_libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    for name in [*ALWAYS, *modules]:
        try:
            importlib.import_module(name)
        except Exception as error:  # the kernel will import it itself, or say why
            print(f"[coursekit-warm] not imported in advance: {name} ({type(error).__name__}: {error})", file=sys.stderr)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.lexists(address):
        os.unlink(address)
    listener.bind(address)
    os.chmod(address, 0o600)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children are reaped by the system
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _serve_one(connection)
            finally:
                os._exit(70)
        connection.close()


def _serve_one(connection: socket.socket) -> None:
    """A zygote's child: reads one launcher's request, makes the kernel in its sandbox, answers STARTED once the kernel
    has dropped its privileges (or FAILED if it died before: the launcher then starts it cold), waits for it, answers
    its exit status (as waitstatus_to_exitcode), and exits."""
    if _peer_uid(connection) != 0:
        os._exit(71)
    connection.settimeout(LAUNCHER_TIMEOUT)
    message, fds, _, _ = socket.recv_fds(connection, 65536, 2)
    request = json.loads(message)
    holder, kernel_uid = int(request["holder"]), int(request["uid"])
    status = os.stat(f"/proc/{holder}")
    if status.st_uid != kernel_uid or kernel_uid == 0:
        os._exit(72)
    spaces = {name: os.open(f"/proc/{holder}/ns/{name}", os.O_RDONLY) for name in NAMESPACES}
    same = {name for name, fd in spaces.items() if os.stat(fd).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino}
    if same - OPTIONAL_NAMESPACES:  # the holder is not in a sandbox of its own: never a kernel outside one
        connection.sendall(FAILED)
        os._exit(75)
    libc = _libc()
    for name, fd in spaces.items():
        if name not in same:
            _checked(libc.setns(fd, 0), f"setns({name})")
        os.close(fd)
    started, started_here = os.pipe()
    kernel = os.fork()  # the first process forked after joining the PID namespace is in it
    if kernel == 0:
        try:
            os.close(started)
            _become_kernel(request, kernel_uid, fds, started_here)
        finally:
            os._exit(73)
    for fd in [*fds, started_here]:
        os.close(fd)
    began = os.read(started, 1) == STARTED[:1]
    connection.settimeout(5)
    try:
        connection.sendall(STARTED if began else FAILED)
    except OSError:
        pass  # the launcher is gone
    _, status = os.waitpid(kernel, 0)
    try:
        connection.sendall(str(os.waitstatus_to_exitcode(status)).encode())
    except OSError:
        pass
    os._exit(0)


def _peer_uid(connection: socket.socket) -> int:
    import struct

    _, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid


def _become_kernel(request: dict, uid: int, fds: list[int], started: int) -> None:
    """In the sandbox's namespaces, as root: becomes the unprivileged kernel, says so on the pipe `started`, and runs
    ipykernel (never returns)."""
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    for target, fd in zip((1, 2), fds, strict=False):
        os.dup2(fd, target)
    started = os.dup2(started, 3) if started != 3 else started
    os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    os.chdir(request["cwd"])
    for name, value in request["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    _drop_privileges(uid)
    os.environ.clear()
    os.environ.update(request["environment"])
    random.seed()  # from the system's entropy, as a new process seeds them
    if "numpy.random" in sys.modules:
        sys.modules["numpy.random"].seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    os.write(started, STARTED[:1])
    os.close(started)
    connection_file = request["connection_file"]
    sys.argv = ["ipykernel_launcher", "-f", connection_file]
    sys.path[0:0] = [request["cwd"]]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv=["-f", connection_file])
    os._exit(0)


def _drop_privileges(uid: int) -> None:
    """Root to `uid` with no groups, no capability in any set, NoNewPrivs; checked, or the process exits."""
    libc = _libc()
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _checked(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")
    _checked(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header, data = _CapHeader(CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    _checked(libc.capset(ctypes.byref(header), data), "capset")
    _checked(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    # Changing uid made the process undumpable: its /proc files root's, /proc/self/fd and /proc/self/mem closed to it.
    # A cold kernel, exec'd as `uid`, is dumpable: so is this one (its memory is the zygote's, which holds no secret).
    _checked(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    ids = {status[key].split()[i] for key in ("Uid", "Gid") for i in range(4)}
    caps = {status[key].strip() for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    if ids != {str(uid)} or caps != {"0" * 16} or status["NoNewPrivs"].strip() != "1" or status["Groups"].strip():
        os._exit(74)


# ------------------------------------------------------------------------------------------------ the worker's side

def socket_path(build, worker: int) -> str:
    """Grading worker `worker`'s zygote socket, in build/warm/ (root's, mode 0700: the kernels can't see the build)."""
    from pathlib import Path

    folder = Path(build).resolve() / "warm"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return str(folder / f"worker-{worker}.sock")


def start(address: str, modules: list[str], environment: dict[str, str], timeout: float = 120):
    """Starts a zygote listening on `address` with `environment` (the sandbox's) and waits until it is ready; returns
    its process (subprocess.Popen), or None (said on stderr) when it could not start: kernels then start cold."""
    import select
    import subprocess

    process = subprocess.Popen([sys.executable, __file__, address, *modules], env=environment, cwd="/",
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if ready and process.stdout.readline() == READY:
        return process
    process.kill()
    process.wait()
    print(f"[coursekit-warm] the zygote did not start: kernels start cold ({address})", file=sys.stderr)
    return None


def stop(process) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------------------------- the launcher's side

def connect(address: str | None) -> socket.socket | None:
    """A connection to a zygote, or None when there is none to ask (the kernel then starts cold)."""
    if not address:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address)
    except OSError:
        connection.close()
        return None
    return connection


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def launch(connection: socket.socket, sandbox_command: list[str], environment: dict[str, str], fds: list[int],
           request: dict) -> int | None:
    """The launcher: runs `sandbox_command` (bubblewrap with HOLDER as its program, passed `fds`), asks the zygote on
    `connection` for a kernel in it (`request`: uid, cwd, limits, environment, connection_file), and returns the
    kernel's exit status once it ends; the sandbox is then ended. None when no warm kernel started (the sandbox did not
    start, the zygote did not answer or said FAILED): the caller then starts the kernel cold."""
    import subprocess

    read, write = os.pipe()
    sandbox = subprocess.Popen(sandbox_command, env=environment, stdin=read, stdout=subprocess.PIPE, pass_fds=fds)
    os.close(read)
    try:
        if sandbox.stdout.readline() != READY:
            return None
        inits = _children(sandbox.pid)
        holders = _children(inits[0]) if len(inits) == 1 else []
        if len(holders) != 1:
            return None
        try:
            socket.send_fds(connection, [json.dumps({**request, "holder": holders[0]}).encode()], [1, 2])
            answers = connection.makefile("rb")
            if answers.readline() != STARTED:
                return None
            code = answers.read()
        except OSError:
            return None
        return int(code) if code.strip().lstrip(b"-").isdigit() else 77
    finally:
        os.close(write)  # the holder ends, and the sandbox with it
        sandbox.stdout.close()
        sandbox.wait()


if __name__ == "__main__":
    del sys.path[0]  # this file's folder: the kernel's imports must not find the kit's modules
    serve(sys.argv[1], sys.argv[2:])
