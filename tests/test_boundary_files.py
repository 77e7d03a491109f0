"""The file boundary: nothing a student or the sandboxed kernel writes can make the grader follow a link, block on a
special file, copy a secret, or lose the course's files.

One small batch of pw3_decoding hand-ins is graded through the kit's real path (intake, sandboxed autograde with two
workers, results, feedback). Some hand-ins attack while they are graded (their kernel replaces files of its folder by
links, a FIFO, a hard link, a sparse 500 MiB file), some are tampered with in submitted/ itself (the notebook is a
link, a FIFO, a hard link; the assignment folder is a link; the folder's name is HTML). Two honest hand-ins are graded
beside them. Every test asserts what the attacks got.
"""

import argparse
import hashlib
import os
import shutil
import sqlite3
import stat
from pathlib import Path, PurePosixPath

import nbformat
import pytest
from nbgrader.api import Gradebook

import handins
from assignments import PW3, max_points
from coursekit import (autograde, boundary, collect, gradebook_backup, grading, layout, results, samples,
                       sandbox, student_ids)

os.environ["HF_HUB_OFFLINE"] = "1"

SECRET = "secret-of-the-grader-7f3a9c"
HTML_ID = "<img src=x onerror=alert(1)>"
# The course root, from the folder nbgrader runs the notebook in: build/grading/<assignment>/worker-<n>/out/<student>/<a>/
COURSE_ROOT = "../../../../../../../"
# Definition tables of nbgrader's gradebook (the assignment, its cells, the hidden tests): grading never changes them.
DEFINITION_TABLES = ["assignment", "base_cell", "course", "grade_cells", "notebook", "solution_cells", "source_cell",
                     "task_cells"]

REPLACE_NOTEBOOK = """import os
if os.path.lexists({notebook!r}):
    os.remove({notebook!r})
os.symlink({target!r}, {notebook!r})
print("replaced by a link to", {target!r})
"""
LINK_SECRET = """import os
os.symlink({secret!r}, "leak.txt")
os.symlink({secret!r}, "leak.ipynb")
"""
FILL_FOLDER = """import os
with open("big.dat", "wb") as f:
    f.truncate(500 * 2**20)  # sparse: 500 MiB that cost no disk
os.mkfifo("pipe.ipynb")
os.link({notebook!r}, "hard.ipynb")
os.symlink("/", "root")
"""

# The kernel's IPC folder is the one host folder it can write besides its scratch copy: every socket file in it becomes
# a link to the gradebook, and links wait under the names of the worker's next sockets and beside them (root removes
# the folder, and jupyter_client the socket files, after the kernel).
LINKS_IN_IPC_FOLDER = """import json, os
from ipykernel.connect import get_connection_info
_ip = json.loads(get_connection_info())["ip"]
_folder = os.path.dirname(_ip)
_course = os.path.dirname(os.path.dirname(os.path.dirname(_folder)))
_targets = [os.path.join(_course, "gradebook.db"), os.path.join(_course, "source", {name!r}, {notebook!r})]
for _entry in os.listdir(_folder):
    os.remove(os.path.join(_folder, _entry))
    os.symlink(_targets[0], os.path.join(_folder, _entry))
for _port in range(1, 40):
    if not os.path.lexists(f"{{_ip}}-{{_port}}"):
        os.symlink(_targets[_port % 2], f"{{_ip}}-{{_port}}")
os.symlink(_course, os.path.join(_folder, "course"))
print("links planted in", _folder)
"""

# Hand-ins that attack while their kernel runs: the mistakes' answers, with the attack after the imports.
AT_GRADING = {
    "link-to-gradebook": REPLACE_NOTEBOOK.format(notebook=PW3.notebook, target=COURSE_ROOT + "gradebook.db"),
    "link-to-source": REPLACE_NOTEBOOK.format(notebook=PW3.notebook,
                                              target=f"{COURSE_ROOT}source/{PW3.name}/{PW3.notebook}"),
    "link-to-secret": None,  # LINK_SECRET, with the secret's path (made by the fixture)
    "fill-the-folder": FILL_FOLDER.format(notebook=PW3.notebook),
    "links-in-ipc-folder": LINKS_IN_IPC_FOLDER.format(name=PW3.name, notebook=PW3.notebook),
}
# Hand-ins tampered with in submitted/, and what intake says of them.
IN_SUBMITTED = {
    "notebook-links-to-secret": "is a symbolic link",
    "notebook-links-to-source": "is a symbolic link",
    "notebook-is-a-fifo": "is a FIFO",
    "notebook-hard-linked-to-source": "hard links",
    "folder-links-to-source": "is a symbolic link",
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(database: Path, tables: list[str]) -> dict[str, list]:
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as db:
        return {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in tables}


def dump(database: Path) -> list[str]:
    db = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def every_file(*folders: Path):
    for folder in folders:
        for where, _, names in os.walk(folder):
            for name in names:
                yield Path(where, name)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    top = tmp_path_factory.mktemp("boundary")
    course = layout.copy_course(top / "course")
    grading.release(course, PW3)
    secret = top / "grader-secret.txt"  # outside the course
    secret.write_text(SECRET)
    secret.chmod(0o600)
    nbs = samples.notebooks(course, PW3)
    solution, mistakes = nbformat.writes(nbs["solution"]), nbs["mistakes"]

    def hand_in(student: str) -> Path:
        folder = layout.submission_dir(course.submitted, student, PW3)
        folder.mkdir(parents=True)
        return folder / PW3.notebook

    hand_in("honest-solution").write_text(solution)
    hand_in("honest-mistakes").write_text(nbformat.writes(mistakes))
    for student, attack in AT_GRADING.items():
        attack = attack or LINK_SECRET.format(secret=str(secret))
        hand_in(student).write_text(nbformat.writes(handins.inserted_after(mistakes, "imports", attack)))
    source = course.source_notebook(PW3)
    hand_in("notebook-links-to-secret").symlink_to(secret)
    hand_in("notebook-links-to-source").symlink_to(source)
    os.mkfifo(hand_in("notebook-is-a-fifo"))
    os.link(source, hand_in("notebook-hard-linked-to-source"))
    (course.submitted / "folder-links-to-source").mkdir()
    (course.submitted / "folder-links-to-source" / PW3.name).symlink_to(source.parent, target_is_directory=True)
    hand_in(HTML_ID).write_text(solution)

    before = {"gradebook": rows(course.gradebook, DEFINITION_TABLES), "dump": dump(course.gradebook),
              "source": digest(source), "release": digest(course.release_notebook(PW3))}
    found = grading.grade(course, PW3, jobs=2)
    grading.feedback(course, PW3)
    return argparse.Namespace(course=course, secret=secret, before=before, results={r.student: r for r in found})


# The course's own files

def test_the_gradebook_keeps_its_assignment_and_gains_only_the_legitimate_students(batch):
    with sqlite3.connect(batch.course.gradebook) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert rows(batch.course.gradebook, DEFINITION_TABLES) == batch.before["gradebook"], \
        "the assignment, its cells and hidden tests are as released"
    with Gradebook(batch.course.gradebook_url) as gb:
        students = {s.id for s in gb.students}
    assert students == {"honest-solution", "honest-mistakes", *AT_GRADING, *IN_SUBMITTED}


def test_the_instructor_notebooks_are_unchanged(batch):
    assert digest(batch.course.source_notebook(PW3)) == batch.before["source"]
    assert digest(batch.course.release_notebook(PW3)) == batch.before["release"]


def test_a_secret_outside_the_course_is_neither_copied_nor_changed(batch):
    assert batch.secret.read_text() == SECRET and stat.S_IMODE(batch.secret.stat().st_mode) == 0o600
    course = batch.course
    leaked = [str(p) for p in every_file(course.autograded, course.feedback, course.reports, course.staging(PW3))
              if SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_the_autograded_folder_holds_only_each_notebook_no_link_and_stays_small(batch):
    found = {}
    for where, folders, names in os.walk(batch.course.autograded):
        for name in folders + names:
            mode = os.lstat(os.path.join(where, name)).st_mode
            assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), f"{where}/{name} is no plain file or folder"
        for name in names:
            found[os.path.relpath(os.path.join(where, name), batch.course.autograded)] = \
                os.lstat(os.path.join(where, name)).st_size
    graded = {"honest-solution", "honest-mistakes", *AT_GRADING}
    assert {str(PurePosixPath(p).parent.parent) for p in found} == graded
    assert {PurePosixPath(p).name for p in found} <= {PW3.notebook, "timestamp.txt"}
    assert sum(found.values()) < 5 * 2**20, "nothing the kernel wrote (a sparse 500 MiB file) comes back"


def test_nothing_the_kernels_wrote_is_left_on_the_host(batch):
    scratch = batch.course.root / "build" / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []
    ipc = batch.course.root / "build" / "ipc"
    links = [str(p) for p in ipc.rglob("*") if p.is_symlink()] if ipc.exists() else []
    assert links == [], "no link a kernel planted in its IPC folder is left"
    assert not list((batch.course.root / "build" / "grading" / PW3.name).glob("worker-*/*/*"))


# The hand-ins

def test_hand_ins_that_attack_their_folder_while_graded_get_the_points_of_their_answers(batch):
    honest = batch.results["honest-mistakes"]
    assert batch.results["honest-solution"].score == max_points(PW3), "the honest hand-ins are graded as usual"
    assert honest.status == "graded" and 0 < honest.score < max_points(PW3)
    for student in AT_GRADING:
        attacker = batch.results[student]
        assert (attacker.status, attacker.exercises) == ("graded", honest.exercises), student


def test_the_autograded_notebook_is_what_nbgrader_wrote_not_what_the_kernel_linked(batch):
    mistakes = samples.mistakes(PW3).values()
    for student in AT_GRADING:
        path = layout.submission_dir(batch.course.autograded, student, PW3) / PW3.notebook
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert all(m.strip() in code for m in mistakes), f"{student}: the student's own notebook, graded"


@pytest.mark.parametrize("student, reason", IN_SUBMITTED.items())
def test_a_hand_in_tampered_with_in_submitted_is_not_graded_and_says_why(batch, student, reason):
    result = batch.results[student]
    assert result.status == "not graded" and reason in result.note, result.note
    assert "\n" not in result.note
    assert not layout.submission_dir(batch.course.staging(PW3), student, PW3).exists()
    assert not layout.submission_dir(batch.course.autograded, student, PW3).exists()


def test_a_student_id_with_markup_is_not_graded_never_reaches_the_gradebook_and_is_shown_escaped(batch):
    shown = student_ids.shown(HTML_ID)
    assert "<" not in shown and ">" not in shown and "'" not in shown
    result = batch.results[shown]
    assert result.status == "not graded" and "markup characters" in result.note
    with Gradebook(batch.course.gradebook_url) as gb:
        assert all("<" not in s.id for s in gb.students)
    for path in every_file(batch.course.reports, batch.course.autograded, batch.course.feedback):
        assert HTML_ID.encode() not in path.read_bytes() and b"<img src=x" not in path.read_bytes(), path
    assert shown in results.report_path(batch.course, PW3).read_text(encoding="utf-8")


# The gradebook's snapshot

def test_the_batch_snapshot_holds_the_gradebook_as_it_was_before(batch):
    taken = gradebook_backup.snapshots(batch.course, PW3)
    assert len(taken) == 1 and stat.S_IMODE(taken[0].stat().st_mode) == 0o600
    assert dump(taken[0]) == batch.before["dump"]


def test_a_batch_that_fails_midway_leaves_a_snapshot_of_the_gradebook_before_it(batch, tmp_path, monkeypatch):
    course = layout.Course(tmp_path / "course")
    shutil.copytree(batch.course.root, course.root, ignore=shutil.ignore_patterns("submitted", "build"))
    samples.write(course, PW3)
    before = dump(course.gradebook)

    def broken_grading(*args, **kwargs):
        with open(course.gradebook, "r+b") as f:  # half a batch, then a disaster: the gradebook is overwritten
            f.write(b"not a database" * 1000)
        raise RuntimeError("grading died mid-way")

    monkeypatch.setattr(autograde, "autograde", broken_grading)
    with pytest.raises(RuntimeError, match="mid-way"):
        grading.grade(course, PW3, force=True)
    latest = gradebook_backup.snapshots(course, PW3)[-1]
    assert dump(latest) == before
    shutil.copyfile(latest, course.gradebook)  # the README's restore
    with Gradebook(course.gradebook_url) as gb:
        assert gb.find_assignment(PW3.name).name == PW3.name


def test_only_the_last_snapshots_are_kept(batch, tmp_path):
    course = layout.Course(tmp_path)
    shutil.copyfile(batch.course.gradebook, course.gradebook)
    made = [gradebook_backup.snapshot(course, PW3, course.gradebook_url) for _ in range(gradebook_backup.KEEP + 2)]
    assert gradebook_backup.snapshots(course, PW3) == made[-gradebook_backup.KEEP:]


# The pieces, alone

@pytest.fixture
def planted(tmp_path):
    """A folder with one plain file and every kind of thing a sandbox can put beside it; a secret outside it."""
    folder, secret = tmp_path / "folder", tmp_path / "secret.txt"
    (folder / "sub").mkdir(parents=True)
    secret.write_text(SECRET)
    (folder / "plain.txt").write_text("plain")
    (folder / "sub" / "deep.txt").write_text("deep")
    (folder / "link.txt").symlink_to(secret)
    (folder / "linked-folder").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(folder / "pipe")
    (folder / "own.txt").write_text("own")
    os.link(folder / "own.txt", folder / "hard.txt")
    with open(folder / "sparse.dat", "wb") as f:
        f.truncate(500 * 2**20)
    return folder, secret


def test_read_tree_reads_plain_files_and_refuses_everything_else_with_a_reason(planted):
    folder, _ = planted
    tree = boundary.read_tree(folder, max_bytes=2**20)
    assert tree.files == {"plain.txt": b"plain", "sub/deep.txt": b"deep"}
    assert set(tree.refused) == {"link.txt", "linked-folder", "pipe", "own.txt", "hard.txt", "sparse.dat"}
    assert "link.txt is a symbolic link" in tree.refused["link.txt"]
    assert "linked-folder is a symbolic link" in tree.refused["linked-folder"]
    assert "pipe is a FIFO" in tree.refused["pipe"]
    assert "own.txt has 2 hard links" in tree.refused["own.txt"] and "hard.txt has 2" in tree.refused["hard.txt"]
    assert "sparse.dat is 500.0 MiB" in tree.refused["sparse.dat"]
    assert all("\n" not in why for why in tree.refused.values())


def test_read_tree_refuses_a_folder_reached_through_a_link(planted):
    folder, _ = planted
    with pytest.raises(boundary.Refused, match="symbolic link"):
        boundary.read_tree(folder, "linked-folder", max_bytes=2**20)


def test_a_scratch_folder_is_removed_without_following_its_links(planted, tmp_path):
    folder, secret = planted
    assert shutil.rmtree.avoids_symlink_attacks
    sandbox.remove_kernel_folder(folder)
    assert not folder.exists() and secret.read_text() == SECRET


def test_the_scratch_copy_has_the_plain_files_only(planted, tmp_path):
    folder, _ = planted
    scratch = tmp_path / "scratch"
    sandbox.make_scratch(folder, scratch, None)
    copied = {str(p.relative_to(scratch)) for p in scratch.rglob("*")}
    assert copied == {"plain.txt", "sub", "sub/deep.txt"}


@pytest.mark.parametrize("student_id, reason", [
    ("ada-lovelace", ""), ("élodie.ndiaye", ""), ("Ada Lovelace", ""),
    (HTML_ID, "markup"), ("a&b", "markup"), ("a`b", "markup"), ("a'b", "markup"),
    ("../gradebook", "path"), ("a/b", "path"), ("a\\b", "path"), (".hidden", "path"), ("a..b", "path"),
    ("a\0b", "not printable"), ("a\nb", "not printable"), ("", "empty"), ("x" * 65, "more than"),
])
def test_student_ids_are_checked(student_id, reason):
    problem = student_ids.problem(student_id)
    assert (reason in problem) if reason else problem == ""
    assert student_id not in problem or not student_id
    shown = student_ids.shown(student_id)
    assert not set(shown) & set(student_ids.MARKUP + "/\\\0\n") and len(shown) <= 3 * student_ids.MAX_LENGTH + 3


def test_a_moodle_folder_name_with_markup_becomes_a_plain_id():
    entry = PurePosixPath(f"{HTML_ID}_42_assignsubmission_file_/{PW3.notebook}")
    assert collect.moodle_student(entry)["student_id"] == "img-src-x-onerror-alert-1"
    assert collect.moodle_student(PurePosixPath(f"王芳_7_assignsubmission_file_/{PW3.notebook}"))["student_id"] \
        == "participant-7", "a name without Latin letters is not an empty id"
