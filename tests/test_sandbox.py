"""The grading sandbox holds, even though grading runs as root, and one hand-in can't hurt another or the batch.

Every defence is tested by an attack that would succeed without it, run by the student's side: a real kernel
started with the sandbox's kernelspec through jupyter_client (as nbgrader starts it), or `sandbox.run` where
no kernel is needed. Each test asserts what the attack got.
"""

import argparse
import contextlib
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assignments import PW2
from coursekit import autograde, layout, results as scores, sandbox, warm_kernels, workers

# Worker processes (spawned) import this module to find the tasks below: keep its imports light (jupyter_client,
# nbgrader and the CLI are imported by the tests that use them).

os.environ["HF_HUB_OFFLINE"] = "1"
SECRET = "planted-" + secrets.token_hex(8)
GRADERS_VARIABLES = {"PW2_PLANTED_SECRET": SECRET, "GRADEBOOK_URL": f"postgresql://grader:{SECRET}@localhost/tf",
                     "PGPASSWORD": SECRET}
# Worker slots of their own (uids 60041...), apart from those of a grading batch that may run on this machine.
_slots = itertools.count(40)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox drops to a uid of its own only as root")


@pytest.fixture(scope="module", params=["cold", "warm"])
def course(tmp_path_factory, request):
    """A course directory: the hand-in ada's folder, another hand-in, the gradebook and source/; a canary file's path
    outside the course; and how its kernels start: cold (a new Python in the sandbox) or warm (forked into the sandbox
    by a zygote that imported torch, coursekit/warm_kernels.py: every attack below is tried on both)."""
    top = tmp_path_factory.mktemp("sandbox")
    root = top / "course"
    work = layout.submission_dir(root / "autograded", "ada", PW2)
    work.mkdir(parents=True)
    (root / "gradebook.db").write_text("hidden tests")
    (root / "source").mkdir()
    bob = layout.submission_dir(root / "autograded", "bob", PW2)
    bob.mkdir(parents=True)
    (bob / PW2.notebook).write_text("bob's answers")
    found = argparse.Namespace(root=root, work=work, build=root / "build", bob=bob, canary=top / "canary", zygote=None,
                               warm={})
    if request.param == "warm" and os.geteuid() == 0:
        address = warm_kernels.socket_path(found.build, 99)
        # started from an environment that holds the grader's secrets: the zygote gets the sandbox's environment only
        found.zygote = warm_kernels.start(address, ["torch"], sandbox.kernel_environment({**os.environ,
                                                                                         **GRADERS_VARIABLES}))
        assert found.zygote is not None, "the zygote did not start"
        found.warm = {sandbox.WARM_VARIABLE: address}
    yield found
    warm_kernels.stop(found.zygote)


class Kernel:
    """A sandboxed kernel of grading worker `worker`, started the way nbgrader's workers start theirs."""

    def __init__(self, course, worker: int):
        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        self.uid = sandbox.worker_uid(worker)
        self.scratch = sandbox.scratch_folder(course.build, worker)  # what the kernel sees at course.work's path
        env = sandbox.install_kernel(course.build, course.root)
        settings = sandbox.nbgrader_settings(course.build, worker)["AsyncKernelManager"]
        specs = KernelSpecManager(kernel_dirs=[str(Path(env["JUPYTER_PATH"]) / "kernels")])
        self.manager = KernelManager(kernel_name=sandbox.KERNEL_NAME, kernel_spec_manager=specs, **settings)
        self.manager.start_kernel(cwd=str(course.work), env={**os.environ, **GRADERS_VARIABLES,
                                                             **sandbox.worker_environment(worker), **course.warm})
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60) -> str:
        """What the cell printed, and its error as `ename: evalue`."""
        printed = []

        def collect(message):
            content = message["content"]
            if message["msg_type"] == "stream":
                printed.append(content["text"])
            elif message["msg_type"] == "error":
                printed.append(f"{content['ename']}: {content['evalue']}")
        self.client.execute_interactive(code, output_hook=collect, timeout=timeout)
        return "".join(printed)

    def result(self, code: str, timeout: float = 60):
        """The value the cell prints as JSON in its last line."""
        return json.loads(self.run(code, timeout).strip().splitlines()[-1])

    def shut_down(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel()


@contextlib.contextmanager
def kernel_of(course, worker: int):
    started = Kernel(course, worker)
    try:
        yield started
    finally:
        started.shut_down()


def kernel(course):
    """A kernel of a worker of its own."""
    return kernel_of(course, next(_slots))


@pytest.fixture(scope="module")
def shared_kernel(course):
    """One kernel for the attacks that leave nothing behind."""
    with kernel(course) as started:
        yield started


def processes_of(uid: int) -> list[int]:
    """The host's processes (as the host's /proc shows them) running as `uid`."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                found.append(int(entry.name))
    return found


def test_the_sandbox_is_available_here():
    assert sandbox.unavailable() == "", "install bubblewrap: apt-get install bubblewrap"


@needs_root
def test_the_kernel_has_no_capabilities_and_is_not_root(shared_kernel):
    status = shared_kernel.result("import json; print(json.dumps(dict(line.split(':\\t') for line in "
                                  "open('/proc/self/status').read().splitlines() if ':\\t' in line)))")
    assert status["Uid"].split() == [str(shared_kernel.uid)] * 4 and status["Gid"].split()[0] == str(shared_kernel.uid)
    assert status["Groups"].strip() == ""
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capabilities], 16) == 0, capabilities
    assert status["NoNewPrivs"] == "1"


def test_the_kernel_runs_under_its_limits(shared_kernel):
    limits = shared_kernel.result("import json, resource; print(json.dumps([resource.getrlimit(getattr(resource, r))[0] "
                                  "for r in ('RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_NPROC', 'RLIMIT_FSIZE')]))")
    expected = sandbox.LIMITS
    assert limits[0] == expected.address_space_bytes == expected.memory_bytes - expected.tmp_bytes - expected.shm_bytes
    assert limits[1:] == [expected.cpu_seconds, expected.processes, expected.file_bytes] or os.geteuid() != 0


FROM_A_FORKED_CHILD = """
import json, os, subprocess
canary = {canary!r}
def attempt(what, *args):
    try:
        what(*args)
        return "done"
    except OSError as error:
        return type(error).__name__
read, write = os.pipe()
if os.fork() == 0:
    ppid = os.getppid()
    got = {{
        "parent's root": attempt(lambda: open(f"/proc/{{ppid}}/root" + canary, "w").write("x")),
        "init's root": attempt(lambda: open("/proc/1/root" + canary, "w").write("x")),
        "chroot to the parent's root": attempt(os.chroot, f"/proc/{{ppid}}/root"),
        "chroot to init's root": attempt(os.chroot, "/proc/1/root"),
        "canary itself": attempt(lambda: open(canary, "w").write("x")),
        "init's environment": attempt(lambda: open("/proc/1/environ").read()),
        "user namespace, then chroot": subprocess.run(
            ["unshare", "--user", "--map-root-user", "sh", "-c", "id -u && chroot /proc/1/root /bin/sh -c "
             f"'echo x > {{canary}}' 2>&1 || echo refused"], capture_output=True, text=True).stdout.split(),
    }}
    os.write(write, json.dumps(got).encode())
    os._exit(0)
os.close(write)
got = os.read(read, 10000).decode()
os.wait()
print(got)
"""


def test_a_forked_process_cannot_reach_the_host_through_proc(shared_kernel, course):
    got = shared_kernel.result(FROM_A_FORKED_CHILD.format(canary=str(course.canary)))
    assert got.pop("user namespace, then chroot")[-1] == "refused", "root in a user namespace of its own gets no further"
    assert set(got.values()) <= {"FileNotFoundError", "PermissionError"}, got
    assert not course.canary.exists()


def test_the_course_home_and_other_hand_ins_are_not_visible(shared_kernel, course):
    home = Path.home()
    paths = [course.root / "gradebook.db", course.root / "source", course.bob, course.canary, home / ".bash_history",
             "/run", "/var", "/home", "/etc/shadow"]
    got = shared_kernel.result(f"import json, os; print(json.dumps([os.path.exists(p) for p in {list(map(str, paths))!r}] +"
                               f"[sorted(os.listdir({str(home)!r})) if os.path.isdir({str(home)!r}) else []]))")
    *seen, listed_home = got
    assert seen == [False] * (len(paths) - 1) + [True], "only /etc/shadow (unreadable) is there"
    needed = {Path(p).relative_to(home).parts[0] for p in (sys.prefix, sys.base_prefix) if Path(p).is_relative_to(home)}
    assert set(listed_home) <= needed, "the home folder shows only the way to the interpreter"
    assert "PermissionError" in shared_kernel.run("open('/etc/shadow').read()")


WRITES = """import errno, json
got = {}
for path in ["answer.txt", "/usr/evil", "/etc/evil", "/evil", "../../bob/evil", "../../../evil", "/tmp/scratch"]:
    try:
        open(path, "w").write("42")
        got[path] = "written"
    except OSError as error:
        got[path] = errno.errorcode[error.errno]
print(json.dumps(got))
"""


def test_the_kernel_can_write_its_own_folder_and_tmp_only(shared_kernel, course):
    got = shared_kernel.result(WRITES)
    assert got.pop("answer.txt") == got.pop("/tmp/scratch") == "written"
    assert got.pop("../../../evil") == "EROFS", "the course root is an empty read-only folder"
    assert set(got.values()) <= {"EROFS", "EACCES", "ENOENT"}, got
    assert (shared_kernel.scratch / "answer.txt").read_text() == "42", "its own folder is a scratch copy"
    assert not (course.work / "answer.txt").exists(), "the folder nbgrader writes the autograded notebook to is not"
    assert not (course.bob / "evil").exists() and not (course.root / "evil").exists()


def test_the_environment_holds_none_of_the_graders_variables(shared_kernel):
    got = shared_kernel.result(
        "import json, os\nfound = {}\nfor pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    try:\n        found[pid] = open(f'/proc/{pid}/environ').read()\n"
        "    except OSError as error:\n        found[pid] = type(error).__name__\n"
        "print(json.dumps([dict(os.environ), found]))")
    environ, processes = got
    assert SECRET not in json.dumps(got)
    assert not set(environ) & {*GRADERS_VARIABLES, "JPY_PARENT_PID", "PYTHONPATH", "JUPYTER_PATH", "PW2_IPC",
                               sandbox.UID_VARIABLE, "SUDO_USER", "USER"}
    assert environ["HOME"] == "/tmp" != str(Path.home())
    assert environ["HF_HUB_OFFLINE"] == "1", "the variables the notebook reads are passed on"
    if os.geteuid() == 0:
        assert processes["1"] == "PermissionError", "bubblewrap's init is root's"


def test_the_network_is_unreachable_and_the_hosts_loopback_too(shared_kernel):
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket(socket.AF_UNIX) as abstract:
        name = "\0pw2-" + secrets.token_hex(4)
        abstract.bind(name)
        abstract.listen()
        got = shared_kernel.result(
            "import json, socket\ndef connect(family, address):\n    try:\n"
            "        socket.socket(family).connect(address)\n        return 'connected'\n"
            "    except OSError as error:\n        return error.errno\n"
            f"print(json.dumps([connect(socket.AF_INET, ('1.1.1.1', 53)), connect(socket.AF_INET, "
            f"('127.0.0.1', {server.getsockname()[1]})), connect(socket.AF_UNIX, {name!r})]))")
    assert got == [101, 111, 111], "network unreachable; the host's loopback server and abstract socket refuse"


FILL = """import json, os
def fill(path, chunk=16 * 2**20):
    written = 0
    try:
        with open(path, "wb") as f:
            while written < 4 * 2**30:
                f.write(b"x" * chunk)
                f.flush()
                written += chunk
    except OSError as error:
        return [written, error.errno]
    return [written, None]
"""


def test_filling_tmp_and_dev_shm_fails_at_their_size(shared_kernel):
    got = shared_kernel.result(FILL + "got = [fill('/tmp/fill'), fill('/dev/shm/fill')]\n"
                               "os.remove('/tmp/fill'); os.remove('/dev/shm/fill')\nopen('/tmp/after', 'w').write('ok')\n"
                               "print(json.dumps(got))")
    (tmp, tmp_error), (shm, shm_error) = got
    assert tmp_error == shm_error == 28, "ENOSPC"
    assert tmp <= sandbox.LIMITS.tmp_bytes and shm <= sandbox.LIMITS.shm_bytes
    assert shared_kernel.run("print(open('/tmp/after').read())").strip() == "ok", "the kernel goes on"


def test_a_huge_file_in_the_hand_in_folder_fails_with_EFBIG(tmp_path):
    limits = sandbox.Limits(file_bytes=32 * 2**20)
    run = sandbox.run([sys.executable, "-c", FILL + "print(json.dumps(fill('huge')))"], tmp_path / "work",
                      uid=sandbox.worker_uid(next(_slots)), limits=limits, capture_output=True, text=True, timeout=60)
    assert json.loads(run.stdout) == [limits.file_bytes, 27], run.stderr


MEMORY_GRAB = FILL + """import mmap
def most_mappable():
    low, high = 0, 64 * 2**30
    while high - low > 2**20:
        middle = (low + high) // 2
        try:
            mmap.mmap(-1, middle).close()
            low = middle
        except OSError:
            high = middle
    return low
print(json.dumps(fill('/tmp/fill')[0] + fill('/dev/shm/fill')[0] + most_mappable()))
"""


def test_the_memory_budget_holds_for_tmpfs_and_allocations_together(tmp_path):
    grabbed = json.loads(sandbox.run([sys.executable, "-c", MEMORY_GRAB], tmp_path / "work",
                                     uid=sandbox.worker_uid(next(_slots)), capture_output=True, text=True, timeout=60).stdout)
    budget = sandbox.LIMITS.memory_bytes
    assert budget - 256 * 2**20 < grabbed <= budget, f"{grabbed / 2**30:.2f} GiB of /tmp, /dev/shm and memory"


def test_a_fork_loop_fails_with_BlockingIOError_and_the_kernel_survives(course):
    with kernel(course) as started:
        got = started.result("import json, os, time\nchildren, error = [], None\ntry:\n"
                             "    for _ in range(400):\n        pid = os.fork()\n        if pid == 0:\n"
                             "            time.sleep(60)\n            os._exit(0)\n        children.append(pid)\n"
                             "except OSError as e:\n    error = type(e).__name__\nfor pid in children:\n"
                             "    os.kill(pid, 9)\n    os.waitpid(pid, 0)\nprint(json.dumps([len(children), error]))")
        assert got[1] == "BlockingIOError" and got[0] < sandbox.LIMITS.processes
        assert started.run("print(6 * 7)").strip() == "42"


DAEMON = """import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            with open("heartbeat", "a") as f:
                f.write(".")
            time.sleep(0.1)
    os._exit(0)
os.wait()
"""


def kernel_with_a_daemon(course) -> tuple[Kernel, Path]:
    """A kernel that started DAEMON, and the daemon's heartbeat file (seen from the host)."""
    started = Kernel(course, next(_slots))
    heartbeat = started.scratch / "heartbeat"
    try:
        started.run(DAEMON)
        time.sleep(0.5)
        assert heartbeat.stat().st_size > 0 and processes_of(started.uid), "the daemon runs"
    except BaseException:
        started.shut_down()
        raise
    return started, heartbeat


@needs_root
def test_a_setsid_daemon_is_gone_once_the_kernel_is_shut_down(course):
    started, heartbeat = kernel_with_a_daemon(course)
    started.shut_down()
    time.sleep(0.3)
    beats = heartbeat.stat().st_size
    time.sleep(1)
    assert heartbeat.stat().st_size == beats, "the heartbeat stopped"
    assert processes_of(started.uid) == [], "no process of the kernel's uid is left on the host"


def test_a_warm_kernel_is_forked_with_its_imports_done_and_a_cold_one_is_not(shared_kernel, course):
    got = shared_kernel.result("import json, os, sys; print(json.dumps(['torch' in sys.modules, os.getpid()]))")
    assert got == ([True, 3] if course.zygote else [False, 2]), "warm: a fork of the zygote, pid 3 (the holder is 2)"


def test_each_kernel_draws_random_numbers_of_its_own(course):
    """A new Python seeds `random`, numpy and torch from the system's entropy: so does every kernel, warm ones too
    (forks of one zygote would otherwise all draw the same numbers)."""
    code = "import json, random, numpy, torch\nprint(json.dumps([torch.rand(3).tolist(), random.random(), " \
           "numpy.random.random()]))"
    with kernel(course) as first, kernel(course) as second:
        one, other = first.result(code), second.result(code)
    assert all(a != b for a, b in zip(one, other, strict=True))


# Reads the kernel's own writable memory (heap, stack, anonymous maps) and says whether `first + second` is in it. The
# needle is given in two halves and never put together, so that the cell's text and variables do not hold it.
OWN_MEMORY_HOLDS = """
import json, re
def own_memory_holds(first, second):
    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:
        for line in maps:
            start, end, perms = re.match(r'([0-9a-f]+)-([0-9a-f]+) (\\S+)', line).groups()
            if perms.startswith('rw'):
                try:
                    mem.seek(int(start, 16))
                    region = mem.read(int(end, 16) - int(start, 16))
                except (OSError, ValueError, OverflowError):
                    continue
                at = region.find(first)
                while at >= 0:
                    if region[at + len(first):at + len(first) + len(second)] == second:
                        return True
                    at = region.find(first, at + 1)
    return False
"""


def halves(text: str) -> tuple[bytes, bytes]:
    middle = len(text) // 2
    return text[:middle].encode(), text[middle:].encode()


@needs_root
def test_a_warm_kernels_memory_holds_nothing_of_the_grader_nor_of_the_kernel_before(course):
    """The zygote was started from an environment with the grader's secrets (see `course`); a first kernel plants a
    token in a module, a file and its memory: the next kernel of the same zygote finds none of them."""
    token = "planted-by-the-first-" + secrets.token_hex(6)
    with kernel(course) as first:
        first.run(f"import torch, json\ntorch.planted = {token!r}\nkept = [{token!r}] * 1000\n"
                  f"open('/tmp/planted', 'w').write({token!r})")
    with kernel(course) as second:
        got = second.result(OWN_MEMORY_HOLDS + "import os, torch\nprint(json.dumps([hasattr(torch, 'planted'), "
                            "os.path.exists('/tmp/planted'), "
                            f"own_memory_holds(*{halves(token)}), own_memory_holds(*{halves(SECRET)})]))",
                            timeout=120)
    assert got == [False, False, False, False]


@needs_root
def test_a_killed_launcher_takes_its_kernel_and_its_daemons_with_it(course):
    started, _ = kernel_with_a_daemon(course)
    try:
        started.manager.shutdown_kernel(now=True)  # no message: SIGKILL to the kernelspec's command (warm: the launcher)
        deadline = time.time() + 10
        while processes_of(started.uid) and time.time() < deadline:
            time.sleep(0.2)
        assert processes_of(started.uid) == [], "no process of the kernel's uid is left on the host"
    finally:
        started.client.stop_channels()


@needs_root
def test_the_zygote_is_out_of_reach_of_kernels_and_of_users_other_than_root(course, tmp_path):
    if not course.zygote:
        pytest.skip("cold kernels have no zygote")
    address = course.warm[sandbox.WARM_VARIABLE]
    with kernel(course) as started:
        got = started.result(f"import json, socket\ntry:\n    socket.socket(socket.AF_UNIX).connect({address!r})\n"
                             "    print(json.dumps('connected'))\nexcept OSError as e:\n    print(json.dumps(e.errno))")
    assert got == 2, "the kernel does not see the build folder (ENOENT)"
    code = f"import socket\ntry:\n    socket.socket(socket.AF_UNIX).connect({address!r}); print('connected')\n" \
           "except OSError as e:\n    print(e.errno)"
    uid = sandbox.worker_uid(next(_slots))
    outside = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c",
                              code], capture_output=True, text=True, timeout=30)
    assert outside.stdout.strip() == "13", "an unprivileged user of the host is refused (EACCES)"


@needs_root
def test_a_kernel_whose_zygote_fails_starts_cold(course, monkeypatch):
    """A zygote that dies after it accepted the launcher (here: one that closes every connection at once): the
    launcher ends the placeholder sandbox and starts the kernel cold, which runs."""
    if not course.zygote:
        pytest.skip("cold kernels have no zygote")
    import threading

    address = warm_kernels.socket_path(course.build, 98)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen()
    stop = threading.Event()

    def refuse():
        while not stop.is_set():
            connection, _ = listener.accept()
            connection.recv(65536)
            connection.close()
    threading.Thread(target=refuse, daemon=True).start()
    monkeypatch.setitem(course.warm, sandbox.WARM_VARIABLE, address)
    try:
        with kernel(course) as started:
            got = started.result("import json, os, sys; print(json.dumps(['torch' in sys.modules, os.getpid()]))")
    finally:
        stop.set()
        listener.close()
        os.unlink(address)
    assert got == [False, 2], "a cold kernel: nothing imported in advance, pid 2"


@needs_root
def test_the_zygote_makes_no_kernel_for_a_process_outside_a_sandbox(course):
    """A request (root's) that names a process of the kernel's uid running on the host, not in a sandbox: the zygote
    answers FAILED and forks no kernel there (it never runs one in the host's namespaces)."""
    if not course.zygote:
        pytest.skip("cold kernels have no zygote")
    uid = sandbox.worker_uid(next(_slots))
    host = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "30"])
    try:
        time.sleep(0.3)
        connection = warm_kernels.connect(course.warm[sandbox.WARM_VARIABLE])
        request = {"holder": host.pid, "uid": uid, "cwd": "/tmp", "limits": {}, "environment": {},
                   "connection_file": "/nonexistent.json"}
        socket.send_fds(connection, [json.dumps(request).encode()], [1, 2])
        connection.settimeout(10)
        answer = connection.makefile("rb").read()
        assert answer == warm_kernels.FAILED
        assert processes_of(uid) == [host.pid], "no process but the host's own runs as that uid"
    finally:
        host.kill()
        host.wait()


def test_a_kernel_leaves_nothing_in_the_ipc_folder_of_the_next_kernel_of_its_worker(course):
    worker = next(_slots)
    ipc = Path(sandbox.nbgrader_settings(course.build, worker)["AsyncKernelManager"]["ip"]).parent
    with kernel_of(course, worker) as first:
        first.run("open(%r, 'w')" % str(ipc / "planted"))
        assert (ipc / "planted").exists()
    with kernel_of(course, worker) as second:
        assert second.run("import os; print(os.path.exists(%r))" % str(ipc / "planted")).strip() == "False"
        assert ipc.stat().st_mode & 0o777 == 0o700 and (os.geteuid() != 0 or ipc.stat().st_uid == second.uid)


def test_an_interrupted_cell_stops_and_the_next_one_runs(course):
    """nbgrader stops a cell that runs out of time with an interrupt: it must reach the kernel."""
    with kernel(course) as started:
        cell = started.client.execute("import time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    print('stopped')")
        time.sleep(1)
        start = time.perf_counter()
        started.manager.interrupt_kernel()
        printed = []
        while True:
            message = started.client.get_iopub_msg(timeout=10)
            if message["parent_header"].get("msg_id") == cell:
                printed.append(message["content"].get("text", ""))
                if message["content"].get("execution_state") == "idle":
                    break
        assert "".join(printed).strip() == "stopped" and time.perf_counter() - start < 5
        assert started.run("print(6 * 7)").strip() == "42"


# The sandbox without a kernel (sandbox.run): the limits, and what it hides.

def _run_sandboxed(tmp_path, code, limits=sandbox.LIMITS):
    root = tmp_path / "course"
    work = root / "autograded" / "ada" / "pw2_transformers"
    work.mkdir(parents=True)
    (root / "gradebook.db").write_text("hidden tests")
    return sandbox.run([sys.executable, "-c", code], work, root, sandbox.worker_uid(next(_slots)), limits=limits,
                       capture_output=True, text=True, timeout=120)


def test_student_code_cannot_see_the_gradebooks_url_or_local_database_sockets(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADEBOOK_URL", "postgresql://grader:secret@localhost/transformers")
    run = _run_sandboxed(tmp_path, "import os; print(os.environ.get('GRADEBOOK_URL'), "
                                   "[os.listdir(d) for d in ('/run/postgresql',) if os.path.isdir(d)])")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() in ("None []", "None [[]]")


def test_the_sandbox_limits_cpu_time(tmp_path):
    run = _run_sandboxed(tmp_path, "while True: pass", sandbox.Limits(cpu_seconds=1))
    # bubblewrap exits with 128 + the signal that ended the program: SIGXCPU, or SIGKILL at the hard limit
    assert run.returncode in (128 + signal.SIGXCPU, 128 + signal.SIGKILL), "stopped by the CPU-time limit"


def test_the_sandbox_limits_memory(tmp_path):
    run = _run_sandboxed(tmp_path, "bytearray(2 * 2**30)", sandbox.Limits(memory_bytes=2**30))
    assert run.returncode != 0 and "MemoryError" in run.stderr


@pytest.mark.parametrize("path", ["../../../gradebook.db", "/etc/hostname"])
def test_the_sandbox_hides_the_course_but_not_the_system(tmp_path, path):
    run = _run_sandboxed(tmp_path, f"import os; print(os.path.exists({path!r}))")
    assert run.stdout.strip() == ("False" if "gradebook" in path else "True")


def test_grading_refuses_to_run_unsandboxed_when_the_sandbox_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "unavailable", lambda: "`bwrap` is not installed")
    with pytest.raises(autograde.SandboxUnavailable, match="bwrap"):
        autograde.autograde(layout.Course(tmp_path), PW2)


# One hand-in cannot take the batch down: the pool autograde grades with, without nbgrader.

_calls: Path | None = None


def _start_test_worker(worker: int, calls: str) -> None:
    global _calls
    _calls = Path(calls)


def _grade_or_die(student: str) -> autograde.AutogradeOutcome:
    """Grades anyone, except that ada's grading ends its worker, and cy's gets it killed."""
    with _calls.open("a") as f:
        f.write(student + "\n")
    if student == "ada":
        os._exit(1)
    if student == "cy":
        os.kill(os.getpid(), signal.SIGKILL)
    return autograde.AutogradeOutcome(student, True, f"graded {student}", 0.0)


STUDENTS = ["ada", "bob", "cy", "dee", "eve", "fay"]


def _grade_batch(calls: Path) -> dict[str, autograde.AutogradeOutcome]:
    return autograde.grade_hand_ins(STUDENTS, 2, _start_test_worker, (str(calls),), _grade_or_die)


def test_a_hand_in_that_kills_its_worker_is_tried_twice_then_failed_and_the_others_are_graded_once(tmp_path):
    outcomes = _grade_batch(tmp_path / "calls")
    calls = (tmp_path / "calls").read_text().split()
    assert {s: calls.count(s) for s in STUDENTS} == {"ada": 2, "bob": 1, "cy": 2, "dee": 1, "eve": 1, "fay": 1}
    assert [s for s in STUDENTS if outcomes[s].success] == ["bob", "dee", "eve", "fay"]
    assert outcomes["ada"].reason == "grading worker died twice: exited with status 1"
    assert outcomes["cy"].reason == "grading worker died twice: killed by SIGKILL (out of memory?)"


def test_a_worker_that_cannot_start_stops_the_batch_saying_why(tmp_path):
    with pytest.raises(workers.WorkerStartError, match="TypeError"):
        autograde.grade_hand_ins(STUDENTS, 2, _start_test_worker, (), _grade_or_die)


def test_make_grade_fails_with_a_one_line_summary_when_hand_ins_could_not_be_graded(tmp_path, monkeypatch, capsys):
    from coursekit import cli, grading

    course = layout.copy_course(tmp_path / "course")

    def grade(course_, assignment, sandboxed, jobs, **options):
        outcomes = _grade_batch(tmp_path / "calls")
        autograde.write_log(course_, assignment, outcomes)
        return [scores.Result(s, "graded" if o.success else "failed", note=o.reason) for s, o in outcomes.items()]
    monkeypatch.setattr(cli, "COURSE", course)
    monkeypatch.setattr(grading, "grade", grade)
    assert cli.cmd_grade(argparse.Namespace(no_sandbox=False, jobs=2, assignment=PW2.name)) != 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "ERROR: pw2_transformers: 2 hand-ins could not be graded for reasons other than the student's code: "
        "ada (grading worker died twice: exited with status 1), "
        "cy (grading worker died twice: killed by SIGKILL (out of memory?)). "
        "nbgrader's log: reports/pw2_transformers/autograde.log")
