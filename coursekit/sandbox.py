"""The sandbox that student code runs in while it is graded: bubblewrap, as verified in shared/notes/sandbox.md.

Inside it, the grading kernel has no network, cannot see the course directory (gradebook.db with the
hidden tests, source/, other students' hand-ins) except its own submission folder, can write only
there (and to a private /tmp that vanishes with it), and runs under limits on memory (address space)
and CPU time.

nbgrader starts it through a kernelspec, `pw2-sandbox`, whose command is this file: run as a script with
the connection file as its argument, it execs ipykernel inside bubblewrap. The kernel talks to nbgrader
over IPC sockets in a folder bound into the sandbox, since it has no network, loopback included.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

KERNEL_NAME = "pw2-sandbox"
MEMORY_BYTES = 4 * 2**30   # torch on the CPU needs about 1.5 GiB of address space for this notebook
CPU_SECONDS = 300          # a whole notebook takes about 10 s of CPU here
LOCAL_DATABASE_SOCKETS = ["/run/postgresql", "/var/run/postgresql"]


def unavailable() -> str:
    """Why the sandbox can't run here, or "" when it can."""
    for tool in ("bwrap", "prlimit"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian: apt-get install bubblewrap util-linux)"
    trial = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net", "true"],
                           capture_output=True, text=True)
    if trial.returncode != 0:
        return f"bubblewrap cannot create a sandbox here: {trial.stderr.strip()}"
    return ""


def command(program: list[str], work: Path, course_root: Path, python_prefix: Path, shared: list[Path],
            memory_bytes: int = MEMORY_BYTES, cpu_seconds: int = CPU_SECONDS) -> list[str]:
    """The command that runs `program` in the sandbox, with `work` as its only writable folder.

    `shared` are paths the program needs from the outside (the IPC folder, the connection file); they are
    bound read-write if they are folders, read-only if they are files.
    """
    hidden = [Path("/tmp"), course_root]
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for folder in hidden:
        args += ["--tmpfs", str(folder)]
    # A PostgreSQL gradebook: no local server socket, no password file, no URL in the environment.
    for folder in sorted({Path(f).resolve() for f in LOCAL_DATABASE_SOCKETS if Path(f).is_dir()}):
        args += ["--tmpfs", str(folder)]
    args += ["--unsetenv", "GRADEBOOK_URL", "--unsetenv", "PGPASSWORD", "--setenv", "PGPASSFILE", "/dev/null"]
    if any(python_prefix.is_relative_to(h) for h in hidden):
        args += ["--ro-bind", str(python_prefix), str(python_prefix)]
    for path in shared:
        args += ["--bind" if path.is_dir() else "--ro-bind", str(path), str(path)]
    # HOME in the private /tmp: IPython's history and library caches don't land in the submission folder
    args += ["--bind", str(work), str(work), "--remount-ro", str(course_root), "--chdir", str(work),
             "--setenv", "HOME", "/tmp", "--unshare-net", "--die-with-parent"]
    return ["prlimit", f"--as={memory_bytes}", f"--cpu={cpu_seconds}", "--", "bwrap", *args, *program]


def install_kernel(build: Path, course_root: Path) -> dict[str, str]:
    """Writes the `pw2-sandbox` kernelspec under build/, and returns the environment and nbgrader options
    that make autograde run its kernels with it."""
    ipc = build / "ipc"
    ipc.mkdir(parents=True, exist_ok=True)
    spec = build / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(Path(__file__).resolve()), "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "env": {"PW2_COURSE_ROOT": str(course_root), "PW2_IPC": str(ipc), "PW2_PYTHON": sys.executable,
                "PW2_PYTHON_PREFIX": sys.prefix},
    }, indent=1))
    return {"JUPYTER_PATH": str(build / "jupyter")}


def nbgrader_settings(build: Path) -> dict[str, dict]:
    """nbgrader configuration that runs the kernels with the `pw2-sandbox` kernelspec, over IPC sockets whose
    paths start with `ip` (a parallel grader gives each worker its own prefix)."""
    return {"Execute": {"kernel_name": KERNEL_NAME},
            "AsyncKernelManager": {"transport": "ipc", "ip": str(build / "ipc" / "kernel")}}


def _run_kernel(connection_file: str) -> None:
    """The kernelspec's command: exec ipykernel in the sandbox. Its working folder is the submission's."""
    env = os.environ
    cmd = command([env["PW2_PYTHON"], "-m", "ipykernel_launcher", "-f", connection_file],
                  work=Path.cwd().resolve(), course_root=Path(env["PW2_COURSE_ROOT"]),
                  python_prefix=Path(env["PW2_PYTHON_PREFIX"]),
                  shared=[Path(env["PW2_IPC"]), Path(connection_file)])
    # Jupyter interrupts a kernel with SIGINT to its whole process group, bubblewrap included: bubblewrap must
    # ignore it (or it dies and takes the kernel with it); ipykernel sets its own handler while it executes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    _run_kernel(sys.argv[1])
