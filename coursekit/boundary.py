"""Files that cross the grading boundary: read from a folder an untrusted party could have written (the grading kernel,
a student through nbgrader's exchange or an LMS zip) without following a link or blocking on a special file, and
written only into a fresh folder of the trusted side's own.

Reading (see shared/notes/boundary.md): the folders below a trusted one are opened one at a time with
O_DIRECTORY|O_NOFOLLOW, every file with O_NOFOLLOW|O_NONBLOCK relative to its folder's descriptor, and judged by fstat
on that descriptor: only a regular file with one link and within the size budget is read. Anything else (a symbolic
link, a hard link, a FIFO, a device, a socket, a file over the budget) is refused, with a one-line reason.
"""

import errno
import os
import stat
from collections.abc import Collection
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

MiB = 2**20
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class Refused(ValueError):
    """A name that is not a plain file (or folder) of its own within the budget; str() is the one-line reason."""


class TooLarge(Refused):
    """A plain file over its size budget."""


def _kind(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a folder" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(mode) else "a special file")


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise Refused(f"{name!r} is not a name in a folder")


def _not_followed(dir_fd: int, name: str, wanted: str) -> Exception:
    """Why `name` (in `dir_fd`) could not be opened as `wanted`: Refused, saying what it is instead, or
    FileNotFoundError."""
    try:
        what = _kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return FileNotFoundError(errno.ENOENT, f"{name} is missing")
    return Refused(f"{name} is {what}, not {wanted}: not followed")


def open_folder(trusted: Path, *parts: str) -> int:
    """A descriptor of the folder trusted/part/part/... (close it): `trusted` is opened as named (the course's own
    path), each part below it without following a link. Raises Refused (a part is a link, a file...)."""
    fd = os.open(trusted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            _check_name(part)
            try:
                inner = os.open(part, _FOLDER, dir_fd=fd)
            except PermissionError:
                raise
            except OSError:  # ELOOP (a link), ENOTDIR, ENOENT
                raise _not_followed(fd, part, "a folder") from None
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def folder(trusted: Path, *parts: str):
    """open_folder as a context: the descriptor is closed on leaving."""
    fd = open_folder(trusted, *parts)
    try:
        yield fd
    finally:
        os.close(fd)


def read_file(dir_fd: int, name: str, max_bytes: int) -> bytes:
    """The bytes of the plain file `name` in the folder `dir_fd`: a regular file with one link, of at most `max_bytes`.
    Raises Refused (TooLarge for a plain file over the budget) with the reason."""
    _check_name(name)
    try:
        fd = os.open(name, _FILE, dir_fd=dir_fd)
    except PermissionError:
        raise
    except OSError:  # ELOOP (a link), ENOENT
        raise _not_followed(dir_fd, name, "a regular file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{name} is {_kind(info.st_mode)}, not a regular file: not read")
        if info.st_nlink != 1:
            raise Refused(f"{name} has {info.st_nlink} hard links (a file of its own has one): not read")
        if info.st_size > max_bytes:
            raise TooLarge(f"{name} is {info.st_size / MiB:.1f} MiB, over the {max_bytes / MiB:g} MiB it may have")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:  # it grew while read
            raise TooLarge(f"{name} is over the {max_bytes / MiB:g} MiB it may have")
        return data
    finally:
        os.close(fd)


def entries(dir_fd: int) -> dict[str, str]:
    """The names in the folder `dir_fd`, each with what it is ("a folder", "a regular file", "a symbolic link"...),
    as the folder itself says (no link followed)."""
    found = {}
    with os.scandir(dir_fd) as listing:
        for entry in listing:
            try:
                found[entry.name] = _kind(entry.stat(follow_symlinks=False).st_mode)
            except FileNotFoundError:
                pass  # gone meanwhile
    return found


@dataclass
class Tree:
    """What read_tree read: {path in the folder: bytes} for the plain files, {path: reason} for the names refused."""
    files: dict[str, bytes] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(map(len, self.files.values()))


def read_tree(trusted: Path, *parts: str, max_bytes: int, max_files: int = 1000,
              names: Collection[str] | None = None) -> Tree:
    """The plain files under trusted/part/... (the folder itself as in open_folder), at most `max_bytes` in all and
    `max_files` of them, read as read_file reads them; sub-folders are entered without following links. With `names`,
    only those names of the folder itself are read (and no sub-folder). Raises Refused when the folder itself is not
    a folder of its own."""
    tree = Tree()

    def walk(dir_fd: int, prefix: str) -> None:
        for name, kind in sorted(entries(dir_fd).items()):
            path = prefix + name
            if names is not None and name not in names:
                continue
            if len(tree.files) >= max_files:
                tree.refused[path] = f"{path}: over the {max_files} files a hand-in may have: not read"
            elif kind == "a folder" and names is None:
                try:
                    inner = os.open(name, _FOLDER, dir_fd=dir_fd)
                except OSError:
                    why = _not_followed(dir_fd, name, "a folder")
                    if isinstance(why, Refused):
                        tree.refused[path] = str(why).replace(name, path, 1)
                    continue
                try:
                    walk(inner, path + "/")
                finally:
                    os.close(inner)
            else:
                try:
                    tree.files[path] = read_file(dir_fd, name, max_bytes - tree.size)
                except Refused as why:
                    tree.refused[path] = str(why).replace(name, path, 1)
                except FileNotFoundError:
                    pass  # gone meanwhile

    with folder(trusted, *parts) as fd:
        walk(fd, "")
    return tree


def write_tree(target: Path, files: dict[str, bytes]) -> None:
    """Writes `files` ({path inside: bytes}, as read_tree gives them) into `target`, a folder of the trusted side's own
    (made here if missing): each file is created, never opened through an existing name (O_EXCL)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = target / name
        if name.startswith("/") or ".." in Path(name).parts or not path.resolve().is_relative_to(target.resolve()):
            raise ValueError(f"{name!r} is not a path inside {target}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("xb") as f:
            f.write(data)
