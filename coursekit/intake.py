"""Checks every hand-in under submitted/ and stages the gradable ones for nbgrader.

Nothing under submitted/ is ever written. Each student's folder gets a verdict: graded as is,
graded after a fix (a renamed notebook, a notebook repaired against the release), or not gradable,
with the reason in plain words. Gradable notebooks are repaired (see `repair`) and written, under the
expected name, to the staging folder that nbgrader autogrades from.

Every hand-in is treated as hostile. One beyond the limits below (MAX_MB, MAX_CELLS) is not graded, and
repair's matching has a bounded cost, so no hand-in keeps intake busy for more than seconds.

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
import re
import shutil
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbgrader.utils import parse_utc

from . import collect, deadlines, layout, repair


@dataclass
class Verdict:
    student: str
    gradable: bool
    note: str = ""          # what was fixed, or why it can't be graded
    notebook: Path | None = None  # the file that is graded


def _read_notebook(text: str) -> nbformat.NotebookNode:
    with warnings.catch_warnings():  # nbformat warns about Colab's missing cell ids, and adds them
        warnings.simplefilter("ignore")
        return nbformat.reads(text, as_version=4)


# What a hand-in may be. The release is 80 kB with 89 cells; a real hand-in has a few hundred cells at most,
# and a few MB even with a Colab save's outputs and plots in it. A hand-in beyond these limits is not a notebook
# somebody worked in: it is not graded, and the reason says which limit and by how much.
MAX_MB = 50
MAX_CELLS = 1000


def _problem(path: Path) -> str:
    """Why the file is not a readable notebook within the limits, or "" if it is one."""
    with path.open("rb") as f:
        data = f.read(MAX_MB * 2**20 + 1)
    if len(data) > MAX_MB * 2**20:
        return (f"{path.name} is over {MAX_MB} MB (a hand-in is a few MB at most, the release 0.1 MB): not graded; "
                "if its outputs make it large, clear them and grade it again")
    if not data.strip():
        return f"{path.name} is empty (0 bytes of notebook)"
    try:
        text = data.decode("utf-8")
        content = json.loads(text)
        cells = content.get("cells") if isinstance(content, dict) else None
        if isinstance(cells, list) and len(cells) > MAX_CELLS:
            return (f"{path.name} has {len(cells)} cells, more than the {MAX_CELLS} a hand-in may have (the release has "
                    f"under 100): not graded")
        _read_notebook(text)
    except UnicodeDecodeError:
        return f"{path.name} is not a text file (is it a zip or a PDF?)"
    except (json.JSONDecodeError, nbformat.reader.NotJSONError):
        return f"{path.name} is not a notebook: it is not valid JSON (was it saved as HTML or truncated?)"
    except Exception as error:  # nbformat's validation errors come in several types
        return f"{path.name} is not a readable notebook: {error}"
    return ""


def inspect(folder: Path, student: str, assignment: layout.Assignment) -> Verdict:
    """The verdict on one student's folder submitted/<student>/<assignment>/."""
    if not folder.is_dir():
        return Verdict(student, False, f"no {assignment}/ folder in the submission")
    expected = folder / assignment.notebook
    others = sorted(p for p in folder.glob("*.ipynb") if p.name != assignment.notebook and p.is_file())
    if expected.is_file():
        problem = _problem(expected)
        note = f"ignored other notebooks: {', '.join(p.name for p in others)}" if others and not problem else ""
        return Verdict(student, not problem, problem or note, None if problem else expected)
    if not others:
        return Verdict(student, False, f"no notebook: {assignment.notebook} is missing")
    if len(others) > 1:
        names = ", ".join(p.name for p in others)
        return Verdict(student, False, f"{assignment.notebook} is missing, and several other notebooks were handed in: "
                       f"{names}")
    problem = _problem(others[0])
    if problem:
        return Verdict(student, False, problem)
    return Verdict(student, True, f"graded {others[0].name} as {assignment.notebook}", others[0])


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
    """The students with a folder for `assignment` in submitted/ (submitted/<student>/<assignment>/)."""
    if not submitted.is_dir():
        return []
    return sorted(p.name for p in submitted.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / assignment.name).exists())


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
            handed_in = _read_notebook(verdict.notebook.read_text(encoding="utf-8"))
            repaired, notes = repair.repair(handed_in, release)
            flags = suspicious(handed_in, release)
            if flags:
                notes.append("suspicious code: " + ", ".join(flags))
            notebooks = sorted(p for p in verdict.notebook.parent.glob("*.ipynb") if p.is_file())
            stamp = collect.submission_time(times, verdict.student, notebooks) \
                or exchange_time(course, assignment, verdict.student, verdict.notebook.parent)
            if stamp is not None and stamp.time.tzinfo is None and tz:  # an LMS time, recorded before the zone was set
                stamp = stamp._replace(time=stamp.time.replace(tzinfo=deadlines.zone(tz)))
            if stamp is not None and stamp.time.tzinfo is None and due is not None:
                zoneless.append(verdict.student)
            elif stamp is not None:
                (target / "timestamp.txt").write_text(_timestamp(stamp.time), encoding="utf-8")
                if due is not None and (stamp.source == collect.SOURCE_ZIP or stamp.time > due):
                    notes.append(f"submitted {deadlines.shown(stamp.time, tz)} (from {stamp.source})")
            elif (verdict.notebook.parent / "timestamp.txt").exists():
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


def exchange_time(course: layout.Course, assignment: layout.Assignment, student: str, folder: Path
                  ) -> collect.Stamp | None:
    """The time of a hand-in that nbgrader's exchange collected: its timestamp.txt, when the course's exchange has
    this hand-in in its inbound folder (`<student>+<assignment>+<timestamp>[+<random>]`, named with that time),
    with the same timestamp.txt and the same notebooks; None otherwise (a timestamp.txt proves nothing by itself)."""
    stamp_file, inbound = folder / "timestamp.txt", deadlines.exchange_inbound(course)
    if not stamp_file.is_file() or inbound is None or not inbound.is_dir():
        return None
    text = stamp_file.read_text(encoding="utf-8", errors="replace").strip()
    try:
        time = parse_utc(text)
    except (ValueError, OverflowError):
        return None

    def digests(where: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in where.glob("*.ipynb") if p.is_file()}

    for entry in inbound.glob(f"{glob_escape(student)}+{glob_escape(assignment.name)}+*"):
        parts = entry.name.rsplit("+", 3) if entry.name.count("+") >= 2 else []
        if len(parts) < 3 or parts[0] != student or parts[1] != assignment.name:
            continue
        try:
            named = parse_utc(parts[2])
            recorded = (entry / "timestamp.txt").read_text(encoding="utf-8").strip()
        except (ValueError, OverflowError, OSError):
            continue
        if named == time and recorded == text and digests(entry) == digests(folder):
            return collect.Stamp(time.replace(tzinfo=timezone.utc), collect.SOURCE_EXCHANGE)
    return None


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
