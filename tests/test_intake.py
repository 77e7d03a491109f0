"""Intake judges every hand-in folder, and stages only what nbgrader can grade."""

import nbformat
import pytest

from coursekit import intake, layout

GOOD = nbformat.writes(nbformat.v4.new_notebook())


@pytest.fixture
def submitted(tmp_path):
    def hand_in(student, files):
        folder = layout.submission_dir(tmp_path / "submitted", student)
        folder.mkdir(parents=True)
        for name, content in files.items():
            (folder / name).write_bytes(content.encode() if isinstance(content, str) else content)
        return folder
    return hand_in


def verdict_of(tmp_path, student):
    return intake.inspect(layout.submission_dir(tmp_path / "submitted", student), student)


def test_a_notebook_with_the_expected_name_is_gradable(tmp_path, submitted):
    submitted("ada", {layout.NOTEBOOK: GOOD})
    verdict = verdict_of(tmp_path, "ada")
    assert verdict.gradable and verdict.note == ""


def test_a_single_notebook_under_another_name_is_graded_under_the_expected_one(tmp_path, submitted):
    submitted("ada", {"Copy of pw2_transformers.ipynb": GOOD})
    verdict = verdict_of(tmp_path, "ada")
    assert verdict.gradable and "Copy of pw2_transformers.ipynb" in verdict.note


def test_other_notebooks_beside_the_expected_one_are_ignored_and_said(tmp_path, submitted):
    submitted("ada", {layout.NOTEBOOK: GOOD, "scratch.ipynb": GOOD})
    verdict = verdict_of(tmp_path, "ada")
    assert verdict.gradable and verdict.notebook.name == layout.NOTEBOOK and "scratch.ipynb" in verdict.note


@pytest.mark.parametrize("content, reason", [
    ("", "is empty"),
    ("   \n", "is empty"),
    ("{\"cells\": [", "not valid JSON"),
    (b"PK\x03\x04\xff\xfe", "not a text file"),
    ("{\"hello\": 1}", "not a readable notebook"),
])
def test_an_unreadable_notebook_is_not_gradable_and_says_why(tmp_path, submitted, content, reason):
    submitted("ada", {layout.NOTEBOOK: content})
    verdict = verdict_of(tmp_path, "ada")
    assert not verdict.gradable and reason in verdict.note


def test_several_notebooks_with_none_expected_are_ambiguous(tmp_path, submitted):
    submitted("ada", {"a.ipynb": GOOD, "b.ipynb": GOOD})
    verdict = verdict_of(tmp_path, "ada")
    assert not verdict.gradable and "a.ipynb, b.ipynb" in verdict.note


def test_a_folder_without_a_notebook_or_assignment_folder_is_reported(tmp_path, submitted):
    submitted("ada", {"notes.txt": "hi"})
    (tmp_path / "submitted" / "bob").mkdir()
    assert "is missing" in verdict_of(tmp_path, "ada").note
    assert "no pw2_transformers/ folder" in verdict_of(tmp_path, "bob").note


def test_staging_copies_gradable_notebooks_under_the_expected_name_and_never_writes_submitted(tmp_path, submitted):
    submitted("ada", {"Copy of pw2_transformers.ipynb": GOOD, "timestamp.txt": "2026-11-20 10:00:00"})
    submitted("bob", {layout.NOTEBOOK: ""})
    course = layout.Course(tmp_path)
    (tmp_path / "release").symlink_to(layout.ROOT / "release")
    before = sorted((p, p.read_bytes()) for p in (tmp_path / "submitted").rglob("*") if p.is_file())
    verdicts = intake.stage(course)
    assert [(v.student, v.gradable) for v in verdicts] == [("ada", True), ("bob", False)]
    staged = layout.submission_dir(course.staging, "ada")
    assert sorted(p.name for p in staged.iterdir()) == [layout.NOTEBOOK, "timestamp.txt"]
    assert not layout.submission_dir(course.staging, "bob").exists()
    assert sorted((p, p.read_bytes()) for p in (tmp_path / "submitted").rglob("*") if p.is_file()) == before


@pytest.mark.parametrize("code, flag", [
    ("open('../../../gradebook.db').read()", "reads the gradebook"),
    ("import socket\nsocket.create_connection(('example.org', 80))", "uses the network"),
    ("import subprocess\nsubprocess.run(['ls', '/'])", "runs shell commands"),
    ("!ls ../..", "runs shell commands"),
    ("open('/tmp/leak.txt', 'w')", "writes outside its folder"),
    ("torch.allclose = lambda *a, **k: True", "patches the grading"),
    ("class Checks:\n    pass", "patches the grading"),
])
def test_suspicious_code_is_flagged(code, flag, release_nb):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    assert flag in intake.suspicious(nb, release_nb)


def test_ordinary_answers_are_not_flagged(release_nb, source_nb):
    from coursekit import answers
    assert intake.suspicious(answers.fill(release_nb, answers.solution_answers(source_nb)), release_nb) == []
