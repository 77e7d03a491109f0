"""The sandbox that student code runs in while it is graded: bubblewrap, hardened as in shared/notes/sandbox.md.

Everything in the grading kernel is hostile. Inside the sandbox it has:
- no privilege: when grading runs as root, bubblewrap (root) sets up the mounts, then `setpriv` drops to an
  unprivileged uid with no account, one per grading worker (60001 + worker), with no capabilities (bounding
  and inheritable sets cleared) and NoNewPrivs. When grading does not run as root, bubblewrap puts the kernel
  in a user namespace of the grading user (it can do nothing that user can't, and can't make user namespaces
  of its own), and the process limit counts that user's other processes too (it is raised by their number);
- its own PID namespace: the kernel is pid 2 under bubblewrap's init, so every process it starts (daemons
  included) ends when it ends, and none can reach the next hand-in's kernel;
- no network (not even the host's loopback), its own IPC and UTS namespaces;
- a file system of its own: the system's /usr and /etc read-only, the virtualenv and the interpreter it links
  to, a scratch folder (read-write) and its IPC folder; not $HOME, /root, /home, /run, /var, the course
  (gradebook.db with the hidden tests, source/, other students' hand-ins, nbgrader's own input and output folders),
  nor any other folder. The scratch folder (build/scratch/worker-<n>/) is a fresh copy of the plain files of the
  folder nbgrader runs the notebook in (the data/ sample), bound at that folder's path, so the notebook's relative
  paths work; nothing in it ever comes back: nbgrader writes the autograded notebook to its own folder, which the
  kernel can neither see nor write, and the scratch folder is removed (without following anything in it) before
  the worker's next kernel and after each hand-in (see coursekit/boundary.py for what crosses back);
- a cleared environment: PATH, HOME=/tmp, LANG and the few variables the notebook reads, nothing of the
  grader's (no GRADEBOOK_URL, no PGPASSWORD, no JPY_PARENT_PID);
- limits: one memory budget split between the address space and the sizes of /tmp and /dev/shm (tmpfs pages
  don't count in the address space), CPU time, processes and threads, and the size of one file.

nbgrader starts it through a kernelspec, `coursekit-sandbox`, whose command is this file: run as a script with the
connection file as its argument, it execs ipykernel in the sandbox. The kernel talks to nbgrader over IPC
sockets in a folder of its own, since it has no network.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__:
    from . import boundary, warm_kernels
else:  # run as the kernelspec's command, a script: its own folder is the first on sys.path
    import boundary
    import warm_kernels

KERNEL_NAME = "coursekit-sandbox"
# Grading worker N's kernels run as uid FIRST_UID + N (no account has these uids). Two courses (or two checkouts) graded
# at once on one machine should each set COURSEKIT_SANDBOX_FIRST_UID, since the process limit counts per uid.
FIRST_UID = int(os.environ.get("COURSEKIT_SANDBOX_FIRST_UID", "60001"))
UID_VARIABLE = "PW2_SANDBOX_UID"
WARM_VARIABLE = "COURSEKIT_WARM_SOCKET"  # the socket of the worker's zygote (coursekit/warm_kernels.py), if it has one

# The only parts of the host's file system the kernel sees (read-only), besides the Python it runs.
SYSTEM_FOLDERS = ["usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"]
# bubblewrap itself starts with this environment (and so does its init, pid 1 in the sandbox).
LAUNCH_ENVIRONMENT = {"PATH": "/usr/bin:/bin"}
# The grader's variables that reach the kernel, when they are set: nothing else does.
PASSED_VARIABLES = ["NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE"]

# Folders that are bubblewrap's own, with the right modes: the missing folders it makes inside them are 0700.
TMPFS_ROOTS = {Path("/"), Path("/tmp"), Path("/dev"), Path("/dev/shm")}

MiB = 2**20
# What the scratch folder gets of the folder nbgrader runs the notebook in: the notebook and the data/ sample (1 MiB).
SCRATCH_COPY_BYTES = 256 * MiB


@dataclass(frozen=True)
class Limits:
    """What one kernel may use. `memory_bytes` is one budget for the address space and the two tmpfs together:
    the address-space limit is what the tmpfs sizes leave of it."""
    memory_bytes: int = 4096 * MiB   # torch on the CPU needs about 1.5 GiB of address space for this notebook
    tmp_bytes: int = 256 * MiB
    shm_bytes: int = 64 * MiB
    cpu_seconds: int = 300           # a whole notebook takes about 10 s of CPU here
    processes: int = 64              # processes and threads of the kernel's uid (the kernel has about 10 threads)
    file_bytes: int = 1024 * MiB     # one file's size (the hand-in folder is on disk)

    @property
    def address_space_bytes(self) -> int:
        left = self.memory_bytes - self.tmp_bytes - self.shm_bytes
        if left <= 0:
            raise ValueError(f"{self}: /tmp and /dev/shm take the whole memory budget")
        return left

    def rlimits(self, processes: int) -> dict[str, int]:
        """The kernel's resource limits (resource module names), with `processes` as its process limit."""
        return {"RLIMIT_AS": self.address_space_bytes, "RLIMIT_CPU": self.cpu_seconds, "RLIMIT_NPROC": processes,
                "RLIMIT_FSIZE": self.file_bytes}


LIMITS = Limits()


def worker_uid(worker: int) -> int | None:
    """The uid the kernels of grading worker `worker` run as: its own when grading runs as root, since the
    process limit counts per uid; None (the grading user's) otherwise."""
    return FIRST_UID + worker if os.geteuid() == 0 else None


def worker_environment(worker: int) -> dict[str, str]:
    """What a grading worker adds to its environment so that its kernels run as its own uid."""
    uid = worker_uid(worker)
    return {} if uid is None else {UID_VARIABLE: str(uid)}


def _python_folders() -> list[Path]:
    """The virtualenv and the interpreter it links to, as this Python names them and as they really are."""
    found = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent]
    found += [p.resolve() for p in found]
    return list(dict.fromkeys(found))


def _inside(path: Path, folders) -> bool:
    return any(path.is_relative_to(f) for f in folders)


def _running_tasks(uid: int) -> int:
    """The processes and threads `uid` runs now (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += len(os.listdir(entry / "task"))
        except OSError:
            pass  # ended meanwhile
    return count


def command(program: list[str], work: Path, course_root: Path | None = None, uid: int | None = None,
            writable: list[Path] = (), files: dict[Path, int] | None = None, limits: Limits = LIMITS,
            environ: dict[str, str] = os.environ, work_source: Path | None = None) -> list[str]:
    """The command that runs `program` in the sandbox, with `work` (its working folder) and `writable` as
    the only folders of the host it can write to, as `uid` (root only; None: as the grading user). The course
    root, if given, is an empty read-only folder but for them (as any folder on their way). With `work_source`,
    the folder seen at `work`'s path is `work_source` (a scratch folder), and `work` itself is out of reach.

    `files` maps paths inside to file descriptors open for reading: the sandbox gets a read-only copy of each
    (the connection file). Start the command with LAUNCH_ENVIRONMENT as its environment, and pass it the fds.
    """
    work = Path(work)
    system = [Path("/") / name for name in SYSTEM_FOLDERS if (Path("/") / name).exists()]
    args = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if uid is None:  # bubblewrap makes a user namespace; the kernel can't make one of its own
        args += ["--unshare-user", "--disable-userns"]
    else:            # what setpriv needs to drop to `uid`, and nothing else
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    args += ["--clearenv"]
    for name, value in kernel_environment(environ).items():
        args += ["--setenv", name, value]
    for folder in system:
        args += ["--symlink", os.readlink(folder), str(folder)] if folder.is_symlink() else \
                ["--ro-bind", str(folder), str(folder)]
    args += ["--dev", "/dev", "--proc", "/proc",
             "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm"]
    host = [f for f in system if not f.is_symlink()]  # the host's folders, as they are
    mounted = []  # the host's folders bound into bubblewrap's own (/, /tmp), in order
    if course_root is not None:
        args += ["--tmpfs", str(course_root)]
    for folder in _python_folders():  # the virtualenv may be in the course
        if not _inside(folder, host + mounted):
            args += ["--ro-bind", str(folder), str(folder)]
            mounted.append(folder)
    for source, folder in [(work_source or work, work), *((f, f) for f in writable)]:
        args += ["--bind", str(source), str(folder)]
        mounted.append(Path(folder))
    for path, fd in (files or {}).items():
        args += ["--perms", "0444", "--ro-bind-data", str(fd), str(path)]
    # bubblewrap makes the missing parents of its mount points mode 0700, which `uid` could not go through
    made = {parent for path in [*mounted, *(files or {})] for parent in Path(path).parents
            if parent not in TMPFS_ROOTS and not _inside(parent, host + mounted)}
    for parent in sorted(made):
        args += ["--chmod", "0755", str(parent)]
    # bubblewrap's own / and the course's empty folder, and the folders it made in them, are read-only
    args += ["--remount-ro", "/", *(["--remount-ro", str(course_root)] if course_root is not None else []),
             "--chdir", str(work), "--"]
    if uid is not None:
        args += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    rlimits = limits.rlimits(_process_limit(limits, uid))
    return ["prlimit", f"--as={rlimits['RLIMIT_AS']}", f"--cpu={rlimits['RLIMIT_CPU']}", f"--nproc={rlimits['RLIMIT_NPROC']}",
            f"--fsize={rlimits['RLIMIT_FSIZE']}", "--", "bwrap", *args, *program]


def _process_limit(limits: Limits, uid: int | None) -> int:
    return limits.processes + (0 if uid is not None else _running_tasks(os.getuid()))


def kernel_environment(environ: dict[str, str] = os.environ) -> dict[str, str]:
    """The kernel's whole environment: PATH, HOME=/tmp, LANG, and those of PASSED_VARIABLES that `environ` sets."""
    python_bin = Path(sys.executable).parent
    found = {"PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin", "HOME": "/tmp", "LANG": "C.UTF-8",
             "PGPASSFILE": "/dev/null"}
    return {**found, **{name: environ[name] for name in PASSED_VARIABLES if name in environ}}


def give_folder(folder: Path, uid: int | None, private: bool = False) -> None:
    """Makes `folder` the kernel's: owned by `uid` (nothing to do without one). A `private` folder is made
    afresh, empty and mode 0700 (the kernel's IPC sockets); the hand-in's keeps its mode, plus the right for
    others to go into it, which bubblewrap (root, but without CAP_DAC_OVERRIDE) needs to start the kernel there."""
    folder = Path(folder)
    if private:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700, parents=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
    if uid is not None:
        os.chown(folder, uid, uid)
        if not private:
            folder.chmod(folder.stat().st_mode | 0o001)


def run(program: list[str], work: Path, course_root: Path | None = None, uid: int | None = None,
        limits: Limits = LIMITS, environ: dict[str, str] = os.environ, **kwargs) -> subprocess.CompletedProcess:
    """Runs `program` in the sandbox, with `work` as its folder, and waits for it (subprocess.run's `kwargs`)."""
    give_folder(work, uid)
    return subprocess.run(command(program, work, course_root, uid, limits=limits, environ=environ),
                          env=LAUNCH_ENVIRONMENT, cwd=work, **kwargs)


def scratch_folder(build: Path, worker: int) -> Path:
    """The folder that grading worker `worker`'s kernels work in: build/scratch/worker-<n>/ (named as its IPC folder)."""
    return Path(build).resolve() / "scratch" / f"worker-{worker}"


def remove_kernel_folder(folder: Path) -> None:
    """Removes a folder the kernel could write (its scratch folder, its IPC folder), without following anything in
    it: shutil.rmtree opens each folder relative to its parent's descriptor, without following links (it says so:
    `avoids_symlink_attacks`)."""
    if not shutil.rmtree.avoids_symlink_attacks:
        raise RuntimeError("shutil.rmtree follows links on this platform: a kernel's folder cannot be removed safely")
    shutil.rmtree(folder, ignore_errors=True)


def make_scratch(work: Path, scratch: Path, uid: int | None) -> None:
    """A fresh scratch folder for a kernel, made by root before the kernel starts: a copy of the plain files under
    `work` (the folder nbgrader runs the notebook in; links and special files are left out), owned by `uid`."""
    remove_kernel_folder(scratch)
    scratch.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch.mkdir(mode=0o700)
    copied = boundary.read_tree(work, max_bytes=SCRATCH_COPY_BYTES)
    boundary.write_tree(scratch, copied.files)
    for why in copied.refused.values():  # into nbgrader's log
        print(f"[coursekit-sandbox] not copied into the kernel's folder: {why}", file=sys.stderr)
    if uid is not None:
        for folder, folders, names in os.walk(scratch):  # made just now by root: nothing in it is the kernel's yet
            for name in [*folders, *names]:
                os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)
    give_folder(scratch, uid)


def unavailable() -> str:
    """Why the sandbox can't run here, or "" when it can."""
    for tool in ("bwrap", "prlimit", "setpriv"):
        if shutil.which(tool, path=LAUNCH_ENVIRONMENT["PATH"]) is None:
            return f"`{tool}` is not installed (Debian: apt-get install bubblewrap util-linux)"
    with tempfile.TemporaryDirectory() as folder:
        trial = run([sys.executable, "-c", ""], Path(folder) / "course" / "work", Path(folder) / "course", worker_uid(0),
                    capture_output=True, text=True)
    if trial.returncode != 0:
        return f"bubblewrap cannot create a sandbox here: {trial.stderr.strip()}"
    return ""


def install_kernel(build: Path, course_root: Path) -> dict[str, str]:
    """Writes the `coursekit-sandbox` kernelspec under build/, and returns the environment that makes Jupyter find it."""
    ipc = build / "ipc"
    ipc.mkdir(parents=True, exist_ok=True)
    spec = build / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(Path(__file__).resolve()), "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "interrupt_mode": "message",  # the kernel is in a session of its own: a SIGINT to the group can't reach it
        "env": {"PW2_IPC": str(ipc.resolve()), "PW2_SCRATCH": str((build / "scratch").resolve()),
                "PW2_COURSE_ROOT": str(Path(course_root).resolve())},
    }, indent=1))
    return {"JUPYTER_PATH": str(build / "jupyter")}


def ipc_folder(build: Path, worker: int) -> Path:
    """The folder of grading worker `worker`'s kernel sockets, build/ipc/worker-<n>/: the kernel can write in it."""
    return Path(build).resolve() / "ipc" / f"worker-{worker}"


def nbgrader_settings(build: Path, worker: int) -> dict[str, dict]:
    """nbgrader configuration that runs grading worker `worker`'s kernels with the `coursekit-sandbox` kernelspec,
    over IPC sockets in the worker's own folder (each kernel empties it and makes it its uid's; the worker removes
    it after each hand-in, with the scratch folder)."""
    return {"Execute": {"kernel_name": KERNEL_NAME},
            "AsyncKernelManager": {"transport": "ipc", "ip": str(ipc_folder(build, worker) / "kernel")}}


def _kernel_uid() -> int | None:
    """The uid the kernel runs as: its worker's, and never root's."""
    if os.geteuid() != 0:
        return None
    return int(os.environ.get(UID_VARIABLE, FIRST_UID))


def _run_kernel(connection_file: str) -> None:
    """The kernelspec's command: exec ipykernel in the sandbox. Its working folder (nbgrader's, which holds the
    notebook nbgrader writes) is seen inside as a scratch copy of it, of its worker's own."""
    uid = _kernel_uid()
    ipc = Path(json.loads(Path(connection_file).read_text())["ip"]).parent
    if ipc.parent != Path(os.environ["PW2_IPC"]):
        raise SystemExit(f"the kernel's IPC folder {ipc} is not in {os.environ['PW2_IPC']}")
    give_folder(ipc, uid, private=True)
    work = Path.cwd().resolve()
    scratch = Path(os.environ["PW2_SCRATCH"]) / ipc.name
    make_scratch(work, scratch, uid)
    connection = os.open(connection_file, os.O_RDONLY)
    os.set_inheritable(connection, True)
    # Jupyter interrupts a kernel with SIGINT to its whole process group, bubblewrap included: bubblewrap must
    # ignore it (or it dies and takes the kernel with it). The kernel itself is interrupted by a message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sandboxed = dict(course_root=Path(os.environ["PW2_COURSE_ROOT"]), uid=uid, writable=[ipc],
                     files={Path(connection_file): connection}, work_source=scratch)
    zygote = warm_kernels.connect(os.environ.get(WARM_VARIABLE)) if uid is not None else None
    if zygote is not None:  # a warm kernel, forked into the same sandbox (see coursekit/warm_kernels.py)
        request = {"uid": uid, "cwd": str(work), "connection_file": connection_file, "environment": kernel_environment(),
                   "limits": LIMITS.rlimits(_process_limit(LIMITS, uid))}
        code = warm_kernels.launch(zygote, command(warm_kernels.HOLDER, work, **sandboxed), LAUNCH_ENVIRONMENT,
                                   [connection], request)
        if code is not None:
            sys.exit(code)
        print("[coursekit-sandbox] the warm kernel did not start: starting it cold", file=sys.stderr)
        os.close(connection)  # bubblewrap read it to its end: the cold sandbox gets it anew
        connection = os.open(connection_file, os.O_RDONLY)
        os.set_inheritable(connection, True)
        sandboxed["files"] = {Path(connection_file): connection}
        make_scratch(work, scratch, uid)  # the scratch folder as new
    cmd = command([sys.executable, "-m", "ipykernel_launcher", "-f", connection_file], work, **sandboxed)
    os.execvpe(cmd[0], cmd, LAUNCH_ENVIRONMENT)


if __name__ == "__main__":
    _run_kernel(sys.argv[1])
