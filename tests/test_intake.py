"""Intake judges every hand-in folder, and stages only what nbgrader can grade."""

import json
import time

import nbformat
import pytest

import handins
from coursekit import intake, layout
from assignments import PW2

GOOD = nbformat.writes(nbformat.v4.new_notebook())


@pytest.fixture
def submitted(tmp_path):
    def hand_in(student, files):
        folder = layout.submission_dir(tmp_path / "submitted", student, PW2)
        folder.mkdir(parents=True)
        for name, content in files.items():
            (folder / name).write_bytes(content.encode() if isinstance(content, str) else content)
        return folder
    return hand_in


def verdict_of(tmp_path, student):
    return intake.inspect(layout.submission_dir(tmp_path / "submitted", student, PW2), student, PW2)


def test_a_notebook_with_the_expected_name_is_gradable(tmp_path, submitted):
    submitted("ada", {PW2.notebook: GOOD})
    verdict = verdict_of(tmp_path, "ada")
    assert verdict.gradable and verdict.note == ""


def test_a_single_notebook_under_another_name_is_graded_under_the_expected_one(tmp_path, submitted):
    submitted("ada", {"Copy of pw2_transformers.ipynb": GOOD})
    verdict = verdict_of(tmp_path, "ada")
    assert verdict.gradable and "Copy of pw2_transformers.ipynb" in verdict.note


def test_other_notebooks_beside_the_expected_one_are_ignored_and_said(tmp_path, submitted):
    submitted("ada", {PW2.notebook: GOOD, "scratch.ipynb": GOOD})
    verdict = verdict_of(tmp_path, "ada")
    assert verdict.gradable and verdict.notebook.name == PW2.notebook and "scratch.ipynb" in verdict.note


@pytest.mark.parametrize("content, reason", [
    ("", "is empty"),
    ("   \n", "is empty"),
    ("{\"cells\": [", "not valid JSON"),
    (b"PK\x03\x04\xff\xfe", "not a text file"),
    ("{\"hello\": 1}", "not a readable notebook"),
])
def test_an_unreadable_notebook_is_not_gradable_and_says_why(tmp_path, submitted, content, reason):
    submitted("ada", {PW2.notebook: content})
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


@pytest.fixture
def course(tmp_path):
    (tmp_path / "release").symlink_to(layout.ROOT / "release")
    return layout.Course(tmp_path)


def test_staging_copies_gradable_notebooks_under_the_expected_name_and_never_writes_submitted(course, submitted):
    submitted("ada", {"Copy of pw2_transformers.ipynb": GOOD})
    submitted("bob", {PW2.notebook: ""})
    before = sorted((p, p.read_bytes()) for p in course.submitted.rglob("*") if p.is_file())
    verdicts = intake.stage(course, PW2)
    assert [(v.student, v.gradable) for v in verdicts] == [("ada", True), ("bob", False)]
    staged = layout.submission_dir(course.staging(PW2), "ada", PW2)
    assert sorted(p.name for p in staged.iterdir()) == [PW2.notebook]
    assert not layout.submission_dir(course.staging(PW2), "bob", PW2).exists()
    assert sorted((p, p.read_bytes()) for p in course.submitted.rglob("*") if p.is_file()) == before


def test_a_timestamp_txt_put_in_submitted_by_hand_is_ignored_and_said(course, submitted):
    submitted("ada", {PW2.notebook: GOOD, "timestamp.txt": "2020-01-01 00:00:00"})
    [verdict] = intake.stage(course, PW2)
    assert sorted(p.name for p in layout.submission_dir(course.staging(PW2), "ada", PW2).iterdir()) == [PW2.notebook]
    assert verdict.gradable and "timestamp.txt was ignored" in verdict.note and "without a late penalty" in verdict.note


def test_a_hand_in_over_the_size_limit_is_not_graded_and_says_why(tmp_path, submitted):
    submitted("ada", {PW2.notebook: '{"cells": [], "padding": "' + "x" * (intake.MAX_MB * 2**20) + '"}'})
    verdict = verdict_of(tmp_path, "ada")
    assert not verdict.gradable and f"is over {intake.MAX_MB} MB" in verdict.note


def test_a_hand_in_with_more_cells_than_the_limit_is_not_graded_and_says_why(tmp_path, submitted):
    cells = [nbformat.v4.new_code_cell("") for _ in range(intake.MAX_CELLS + 1)]
    submitted("ada", {PW2.notebook: nbformat.writes(nbformat.v4.new_notebook(cells=cells))})
    verdict = verdict_of(tmp_path, "ada")
    assert not verdict.gradable and f"has {intake.MAX_CELLS + 1} cells, more than the {intake.MAX_CELLS}" in verdict.note


def test_a_crafted_megabyte_of_near_copies_of_a_long_cell_is_staged_in_seconds_and_says_why(course, submitted, release_nb):
    crafted = nbformat.writes(handins.near_copies(release_nb, "grading_helpers", 125))
    assert len(crafted) > 2**20 and len(json.loads(crafted)["cells"]) < intake.MAX_CELLS  # within the limits
    submitted("mallory", {PW2.notebook: crafted})
    start = time.monotonic()
    [verdict] = intake.stage(course, PW2)
    assert time.monotonic() - start < 20  # 5-7 s here; 222 s (repair alone) without a bound on content matching
    assert verdict.gradable and "content matching reached its work limit" in verdict.note


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


def test_shell_commands_are_looked_for_in_linear_time_in_a_megabyte_of_empty_lines(release_nb):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("\n" * 2**20 + "!ls")])
    start = time.monotonic()
    assert "runs shell commands" in intake.suspicious(nb, release_nb)
    assert time.monotonic() - start < 10  # milliseconds; about a quarter of an hour with the former pattern


def test_ordinary_answers_are_not_flagged(release_nb, source_nb):
    from coursekit import answers
    assert intake.suspicious(answers.fill(release_nb, answers.solution_answers(source_nb)), release_nb) == []
