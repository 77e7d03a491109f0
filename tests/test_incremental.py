"""Incremental, resumable grading and the re-grading audit (coursekit/incremental.py, coursekit/regrade.py).

One small pw3 course (its notebook grades fastest) goes through one semester, in order: a batch of two is graded;
a late hand-in arrives and only it is graded; a hidden check is made stricter and the re-grading of every hand-in
is interrupted after its first hand-in, then resumed; the audit lists the students who lost points."""

import csv
import shutil

import nbformat
import pytest
from nbgrader.api import Gradebook

from conftest import tree_digest
from coursekit import autograde, cli, grading, incremental, layout, results as scores, samples
from assignments import PW3

BATCH = {"ada": "solution", "bob": "mistakes"}
STRICTER = "def verdict_temperature_batch(output):\n"


def _hand_in(course: layout.Course, student: str, notebook: nbformat.NotebookNode) -> None:
    folder = layout.submission_dir(course.submitted, student, PW3)
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / PW3.notebook)


def _gradebook(course: layout.Course) -> dict[str, dict[str, float]]:
    with Gradebook(scores.db_url(course)) as gb:
        return {s.student.id: {g.name: g.score for n in s.notebooks for g in n.grades}
                for s in gb.assignment_submissions(PW3.name)}


class Semester:
    def __init__(self, course):
        self.course = course
        self.steps = {}


@pytest.fixture(scope="module")
def semester(tmp_path_factory) -> Semester:
    course = layout.copy_course(tmp_path_factory.mktemp("incremental") / "course")
    grading.release(course, PW3)
    notebooks = samples.notebooks(course, PW3)
    for student, sample in BATCH.items():
        _hand_in(course, student, notebooks[sample])
    s = Semester(course)
    s.notebooks = notebooks
    s.steps["first"] = grading.grade(course, PW3, jobs=2)
    s.autograded_first = tree_digest(course.autograded)
    _hand_in(course, "dee", notebooks["solution"])
    s.steps["late"] = grading.grade(course, PW3, jobs=2)
    s.autograded_late = tree_digest(course.autograded)
    s.submitted = tree_digest(course.submitted)
    return s


def test_the_first_grading_grades_every_hand_in(semester):
    first = semester.steps["first"]
    assert first.graded == sorted(BATCH) and first.unchanged == [] and first.audit is None
    assert {r.student: r.status for r in first} == {s: "graded" for s in BATCH}
    assert {r.student: r.score for r in first}["ada"] == 100


def test_a_late_hand_in_is_the_only_one_graded(semester):
    late = semester.steps["late"]
    assert (late.graded, late.unchanged, late.audit) == (["dee"], ["ada", "bob"], None)
    first = {r.student: r for r in semester.steps["first"]}
    assert {r.student: r for r in late if r.student != "dee"} == first  # same scores and notes, from the gradebook
    assert {r.student: r.score for r in late}["dee"] == 100
    # the others' autograded notebooks were not written again; the log still has a section for every hand-in
    assert {k: v for k, v in semester.autograded_late.items() if not k.startswith("dee/")} == semester.autograded_first
    log = autograde.log_path(semester.course, PW3).read_text()
    assert [line.split(":")[0].strip("= ") for line in log.splitlines() if line.startswith("===== ")] == \
        ["ada", "bob", "dee"]
    assert log.count("not graded again") == 2
    assert set(incremental.load(semester.course, PW3)) == {"ada", "bob", "dee"}


def test_make_grade_says_how_many_were_graded_and_how_many_unchanged(semester, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COURSE", semester.course)
    assert cli.main(["grade", "--assignment", PW3.name, "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "pw3_decoding: 0 graded, 3 unchanged since their last grading (make grade FORCE=1 grades them again)." in out
    assert "Re-grading of" not in out


def test_force_grades_every_hand_in_again(semester, monkeypatch):
    asked = []

    def autograde_(course, assignment, sandboxed, jobs, students, on_outcome):
        asked.append(students)
        raise RuntimeError("stop here: only which hand-ins are graded is tested")
    monkeypatch.setattr(autograde, "autograde", autograde_)
    again = grading.grade(semester.course, PW3)
    assert (again.graded, asked) == ([], [])  # nothing changed: nothing to grade
    with pytest.raises(RuntimeError, match="stop here"):
        grading.grade(semester.course, PW3, force=True)
    assert asked == [["ada", "bob", "dee"]]


@pytest.fixture(scope="module")
def stricter(semester):
    """A hidden check made stricter (its verdict now always fails), then `make grade` interrupted (Ctrl-C) as soon as
    the first hand-in is stored, then `make grade` again."""
    course = semester.course
    nb = nbformat.read(course.source_notebook(PW3), as_version=4)
    [cell] = [c for c in nb.cells if STRICTER in c.source]
    cell.source = cell.source.replace(STRICTER, STRICTER + "    raise AssertionError('a stricter check')\n")
    nbformat.write(nb, course.source_notebook(PW3))
    gradebook_before = _gradebook(course)
    real_append = incremental.append
    stored = []

    def append_then_interrupt(course_, assignment, record):
        real_append(course_, assignment, record)
        stored.append(record.student)
        raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(incremental, "append", append_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            grading.grade(course, PW3, jobs=2)
    interrupted = {"stored": list(stored), "state": incremental.load(course, PW3), "gradebook": _gradebook(course)}
    resumed = grading.grade(course, PW3, jobs=2)
    return gradebook_before, interrupted, resumed


def test_an_interrupted_batch_keeps_what_was_graded_and_resumes_with_the_rest(semester, stricter):
    _, interrupted, resumed = stricter
    [first] = interrupted["stored"]
    assert interrupted["state"][first].tests == incremental.tests_hash(semester.course, PW3)
    assert interrupted["state"][first].before is not None
    assert resumed.unchanged == [first]  # kept, not graded again
    assert sorted(resumed.graded + resumed.unchanged) == ["ada", "bob", "dee"]  # everything, after the change
    results = {r.student: r for r in resumed}
    assert sum(interrupted["gradebook"][first].values()) == results[first].score  # its new grade was kept
    assert all(r.status == "graded" for r in results.values())
    assert results["ada"].score == results["dee"].score == 99  # the stricter check's point is lost
    assert results["ada"].exercises["apply_temperature"] == 9
    assert tree_digest(semester.course.submitted) == semester.submitted, "submitted/ was modified"


def test_the_regrade_audit_lists_the_losses_first(semester, stricter):
    gradebook_before, _, resumed = stricter
    audit = resumed.audit
    assert audit is not None and audit.regraded == 3
    losers = [c.student for c in audit.losses]
    assert {"ada", "dee"} <= set(losers) and audit.gains == []
    assert all(c.delta == -1 for c in audit.losses if c.student in ("ada", "dee"))
    with audit.path.open(newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert audit.path.name.startswith("regrade-") and audit.path.parent == semester.course.reports_of(PW3)
    assert set(rows) == set(losers)
    assert (rows["ada"]["score before"], rows["ada"]["score after"], rows["ada"]["change"]) == ("100", "99", "-1")
    assert (rows["ada"]["apply_temperature before"], rows["ada"]["apply_temperature after"]) == ("10", "9")
    assert rows["ada"]["top_k_filter before"] == rows["ada"]["top_k_filter after"] == "20"
    summary = audit.summary(semester.course.root)
    assert summary.index("LOSSES") < summary.index("ada: 100 -> 99 (-1)")
    assert "Gains" not in summary and f"reports/{PW3}/{audit.path.name}" in summary
    # the gradebook had the old points before the re-grading, and has the new ones now
    assert sum(gradebook_before["ada"].values()) == 100 and sum(_gradebook(semester.course)["ada"].values()) == 99


@pytest.mark.parametrize("changed", ["grading/pipeline.py", "templates/coursekit_feedback/extra.html.j2", "scoring.py"])
def test_the_kits_hash_covers_every_file_of_the_package_at_any_depth(tmp_path, monkeypatch, changed):
    """A file added or changed anywhere in coursekit (a subpackage included) means a new kit: everything is graded
    again. Caches don't count."""
    kit = tmp_path / "coursekit"
    shutil.copytree(incremental.KIT, kit, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(incremental, "KIT", kit)
    course = layout.Course(tmp_path / "course")
    course.root.mkdir()
    (course.root / "nbgrader_config.py").write_text("c = get_config()\n")
    before = incremental.kit_hash(course)
    (kit / "__pycache__").mkdir(exist_ok=True)
    (kit / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert incremental.kit_hash(course) == before
    path = kit / changed
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write("# changed\n")
    assert incremental.kit_hash(course) != before
