"""Checks every hand-in under submitted/ and stages the gradable ones for nbgrader.

Nothing under submitted/ is ever written. Each student's folder gets a verdict: graded as is,
graded after a fix (a renamed notebook, a notebook repaired against the release), or not gradable,
with the reason in plain words. Gradable notebooks are repaired (see `repair`) and written, under the
expected name, to the staging folder that nbgrader autogrades from.

Every hand-in is treated as hostile. One beyond the limits below (MAX_MB, MAX_CELLS) is not graded, and
repair's matching has a bounded cost, so no hand-in keeps intake busy for more than seconds. Its folder is read
without following links (coursekit/boundary.py): a notebook that is a symbolic link, a hard link, a FIFO or a device
is not read, and a hand-in whose notebook is one is not graded, with the reason. A folder whose name is not a valid
student id (coursekit/student_ids.py: markup, path characters...) is not graded either, never reaches the gradebook,
and is reported under its escaped name.

The submission time (nbgrader's timestamp.txt, from which it computes late penalties) is never a file
that came with an upload: a student can upload a timestamp.txt, and one copied into submitted/ by hand
may be theirs. The staged timestamp.txt is, in this order:
- the time that `make collect` recorded for the notebooks it collected from the LMS (Moodle's grading worksheet,
  or the zip's file times as a last resort: see `collect.submission_time`), bound to the notebook's bytes;
- the timestamp.txt that nbgrader's own exchange wrote (`nbgrader collect`), trusted only when the course's
  exchange (c.Exchange.root) still has that very hand-in, `<student>+<assignment>+<timestamp>...` in its inbound
  folder, with the same timestamp.txt and notebook (`exchange_time`).
A hand-in with neither (put in submitted/ by hand, or edited since) has no submission time, so no late penalty; a
timestamp.txt in its folder is ignored, and the note says so. A time without a time zone (an LMS time, when the
course's LMS zone is not set) is written as before while the assignment has no due date; with one, intake stops
(deadlines.DeadlineError): it would have to guess.
"""

import hashlib
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbgrader.utils import parse_utc

from . import boundary, collect, deadlines, layout, repair, student_ids


@dataclass
class Verdict:
    student: str            # the folder's name; escaped (student_ids.shown) when it is not a valid id
    gradable: bool
    note: str = ""          # what was fixed, or why it can't be graded
    notebook: Path | None = None  # the file that is graded
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # the notebooks and timestamp.txt, as read
    id_refused: bool = False  # the folder's name is not a valid student id: it is no student of the gradebook

    @property
    def content(self) -> bytes:
        """The bytes of the notebook that is graded."""
        return self.files[self.notebook.name]


def _read_notebook(text: str) -> nbformat.NotebookNode:
    with warnings.catch_warnings():  # nbformat warns about Colab's missing cell ids, and adds them
        warnings.simplefilter("ignore")
        return nbformat.reads(text, as_version=4)


# What a hand-in may be. The release is 80 kB with 89 cells; a real hand-in has a few hundred cells at most,
# and a few MB even with a Colab save's outputs and plots in it. A hand-in beyond these limits is not a notebook
# somebody worked in: it is not graded, and the reason says which limit and by how much.
MAX_MB = 50
MAX_CELLS = 1000


TIMESTAMP = "timestamp.txt"


def _too_large(name: str) -> str:
    return (f"{name} is over {MAX_MB} MB (a hand-in is a few MB at most, the release 0.1 MB): not graded; "
            "if its outputs make it large, clear them and grade it again")


def read_hand_in(trusted: Path, *parts: str) -> tuple[dict[str, bytes], dict[str, str]]:
    """The notebooks and the timestamp.txt of the hand-in folder trusted/part/... (a folder students write to), read
    without following links (coursekit/boundary.py): {name: bytes}, and {name: why it was not read}. Raises
    boundary.Refused when the folder itself is a link or no folder, FileNotFoundError when it is missing."""
    files, refused = {}, {}
    with boundary.folder(trusted, *parts) as fd:
        for name in sorted(boundary.entries(fd)):
            if not (name.endswith(".ipynb") or name == TIMESTAMP):
                continue
            try:
                files[name] = boundary.read_file(fd, name, MAX_MB * 2**20)
            except boundary.TooLarge:
                refused[name] = _too_large(name)
            except boundary.Refused as why:
                refused[name] = str(why)
            except FileNotFoundError:
                pass  # gone meanwhile
    return files, refused


def _problem(name: str, data: bytes) -> str:
    """Why the file `name` is not a readable notebook within the limits, or "" if it is one."""
    if len(data) > MAX_MB * 2**20:
        return _too_large(name)
    if not data.strip():
        return f"{name} is empty (0 bytes of notebook)"
    try:
        text = data.decode("utf-8")
        content = json.loads(text)
        cells = content.get("cells") if isinstance(content, dict) else None
        if isinstance(cells, list) and len(cells) > MAX_CELLS:
            return (f"{name} has {len(cells)} cells, more than the {MAX_CELLS} a hand-in may have (the release has "
                    f"under 100): not graded")
        _read_notebook(text)
    except UnicodeDecodeError:
        return f"{name} is not a text file (is it a zip or a PDF?)"
    except (json.JSONDecodeError, nbformat.reader.NotJSONError):
        return f"{name} is not a notebook: it is not valid JSON (was it saved as HTML or truncated?)"
    except Exception as error:  # nbformat's validation errors come in several types
        return f"{name} is not a readable notebook: {error}"
    return ""


def inspect(folder: Path, student: str, assignment: layout.Assignment) -> Verdict:
    """The verdict on one student's folder submitted/<student>/<assignment>/, read without following links."""
    wrong_id = student_ids.problem(student)
    if wrong_id:
        return Verdict(student_ids.shown(student), False, f"{wrong_id}: not graded", id_refused=True)
    try:
        files, refused = read_hand_in(folder.parent.parent, folder.parent.name, folder.name)
    except FileNotFoundError:
        return Verdict(student, False, f"no {assignment}/ folder in the submission")
    except boundary.Refused as why:
        return Verdict(student, False, f"{why}: not graded")
    notebooks = {name: data for name, data in files.items() if name.endswith(".ipynb")}
    others = sorted(name for name in notebooks if name != assignment.notebook)
    if assignment.notebook in refused:
        return Verdict(student, False, refused[assignment.notebook])
    ignored = [f"{why} (ignored)" for name, why in refused.items() if name != assignment.notebook]
    if assignment.notebook in notebooks:
        problem = _problem(assignment.notebook, notebooks[assignment.notebook])
        note = f"ignored other notebooks: {', '.join(others)}" if others and not problem else ""
        return Verdict(student, not problem, problem or "; ".join(filter(None, [note, *ignored])),
                       None if problem else folder / assignment.notebook, files)
    if not others:
        return Verdict(student, False, "; ".join([f"no notebook: {assignment.notebook} is missing", *ignored]))
    if len(others) > 1:
        return Verdict(student, False, f"{assignment.notebook} is missing, and several other notebooks were handed in: "
                       f"{', '.join(others)}")
    problem = _problem(others[0], notebooks[others[0]])
    if problem:
        return Verdict(student, False, problem)
    return Verdict(student, True, "; ".join([f"graded {others[0]} as {assignment.notebook}", *ignored]),
                   folder / others[0], files)


# What a hand-in's code has no business doing while it is graded. The sandbox stops all of it, and the points only
# ever come from the grader's own verdicts (coursekit/scoring.py): these patterns only make each attempt visible in
# the grading report.
SUSPICIOUS = {
    "reads the gradebook": re.compile(r"gradebook"),
    "looks for the course's source or hidden tests": re.compile(r"\bsource/|HIDDEN TESTS|nbgrader_config"),
    "uses the network": re.compile(r"\bsocket\b|urllib|\brequests\.|http\.client|\bcurl\b|\bwget\b"),
    "runs shell commands": re.compile(r"\bsubprocess\b|os\.system|os\.popen|^[ \t]*!", re.M),  # [ \t]: linear time
    "writes outside its folder": re.compile(r"open\(\s*['\"](?:/|\.\./)"),
    "patches the grading": re.compile(r"skip-execution|\b(?:torch|F|nn|builtins)\.\w+\s*=[^=]|\bChecks(?:\.\w+)?\s*=[^=]"
                                      r"|class\s+Checks\b|PROBE_MIME|input_transformers|events\.register"
                                      r"|ast_node_interactivity|display_formatter|sys\.set(?:profile|trace)|gc\.get_objects"),
}


def suspicious(nb: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[str]:
    """What the code the student wrote (any cell not as released) looks like it tries to do, from SUSPICIOUS."""
    released = {c.source for c in release.cells}
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c.source not in released)
    tags = " ".join(t for c in nb.cells for t in c.get("metadata", {}).get("tags", []))
    return [what for what, pattern in SUSPICIOUS.items() if pattern.search(code) or pattern.search(tags)]


def students(submitted: Path, assignment: layout.Assignment) -> list[str]:
    """The students with a folder for `assignment` in submitted/ (submitted/<student>/<assignment>/, whatever that
    name is: inspect judges it); a student's folder that is a link to elsewhere is not followed, so not listed."""
    if not submitted.is_dir():
        return []
    with os.scandir(submitted) as entries:
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                      and os.path.lexists(os.path.join(e.path, assignment.name)))


def stage(course: layout.Course, assignment: layout.Assignment) -> list[Verdict]:
    """Inspects every student's folder for `assignment` under the course's submitted/, and writes the repaired
    gradable notebooks to the assignment's staging folder (the other assignments' are left alone)."""
    staging = course.staging(assignment)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    release = nbformat.read(course.release_notebook(assignment), as_version=4)
    times = collect.submission_times(course.submitted)
    due = deadlines.due_of(course, assignment)
    tz, zoneless = deadlines.lms_timezone(course), []
    verdicts = [inspect(layout.submission_dir(course.submitted, s, assignment), s, assignment)
                for s in students(course.submitted, assignment)]
    for verdict in verdicts:
        if verdict.gradable:
            target = layout.submission_dir(staging, verdict.student, assignment)
            target.mkdir(parents=True)
            handed_in = _read_notebook(verdict.content.decode("utf-8"))
            repaired, notes = repair.repair(handed_in, release)
            flags = suspicious(handed_in, release)
            if flags:
                notes.append("suspicious code: " + ", ".join(flags))
            notebooks = [data for name, data in sorted(verdict.files.items()) if name.endswith(".ipynb")]
            stamp = collect.submission_time(times, verdict.student, notebooks) \
                or exchange_time(course, assignment, verdict.student, verdict.notebook.parent, verdict.files)
            if stamp is not None and stamp.time.tzinfo is None and tz:  # an LMS time, recorded before the zone was set
                stamp = stamp._replace(time=stamp.time.replace(tzinfo=deadlines.zone(tz)))
            if stamp is not None and stamp.time.tzinfo is None and due is not None:
                zoneless.append(verdict.student)
            elif stamp is not None:
                (target / "timestamp.txt").write_text(_timestamp(stamp.time), encoding="utf-8")
                if due is not None and (stamp.source == collect.SOURCE_ZIP or stamp.time > due):
                    notes.append(f"submitted {deadlines.shown(stamp.time, tz)} (from {stamp.source})")
            elif TIMESTAMP in verdict.files:
                notes.append("its timestamp.txt was ignored (submission times come from the LMS through make collect, "
                             "or from nbgrader's exchange): graded without a submission time, so without a late penalty")
            verdict.note = "; ".join(filter(None, [verdict.note, *notes]))
            nbformat.write(repaired, target / assignment.notebook)
    if zoneless:
        raise deadlines.DeadlineError(
            f"{assignment} has a due date, but the submission times of {', '.join(zoneless)} have no time zone (Moodle "
            "writes its server's time without one): set c.Deadlines.lms_timezone in nbgrader_config.py (e.g. "
            "'Europe/Paris')")
    return verdicts


def _timestamp(time: datetime) -> str:
    """A time as nbgrader reads it from timestamp.txt (parse_utc): UTC with its offset, or naive as it was."""
    return time.astimezone(timezone.utc).isoformat(" ") if time.tzinfo else time.isoformat(" ")


def exchange_time(course: layout.Course, assignment: layout.Assignment, student: str, folder: Path,
                  files: dict[str, bytes] | None = None) -> collect.Stamp | None:
    """The time of a hand-in that nbgrader's exchange collected: its timestamp.txt, when the course's exchange has
    this hand-in in its inbound folder (`<student>+<assignment>+<timestamp>[+<random>]`, named with that time),
    with the same timestamp.txt and the same notebooks; None otherwise (a timestamp.txt proves nothing by itself).
    Both folders are read as read_hand_in reads them (`files`: the hand-in's, when already read)."""
    inbound = deadlines.exchange_inbound(course)
    if inbound is None or not inbound.is_dir():
        return None
    try:
        files = files if files is not None else read_hand_in(folder.parent.parent, folder.parent.name, folder.name)[0]
        text = files[TIMESTAMP].decode("utf-8", errors="replace").strip()
        time = parse_utc(text)
    except (KeyError, ValueError, OverflowError, OSError):
        return None

    def digests(found: dict[str, bytes]) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in found.items() if name.endswith(".ipynb")}

    for entry in inbound.glob(f"{glob_escape(student)}+{glob_escape(assignment.name)}+*"):
        parts = entry.name.rsplit("+", 3) if entry.name.count("+") >= 2 else []
        if len(parts) < 3 or parts[0] != student or parts[1] != assignment.name:
            continue
        try:
            named = parse_utc(parts[2])
            collected = read_hand_in(inbound, entry.name)[0]
            recorded = collected[TIMESTAMP].decode("utf-8").strip()
        except (ValueError, OverflowError, OSError, KeyError):  # boundary.Refused is a ValueError
            continue
        if named == time and recorded == text and digests(collected) == digests(files):
            return collect.Stamp(time.replace(tzinfo=timezone.utc), collect.SOURCE_EXCHANGE)
    return None


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
