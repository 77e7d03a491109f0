"""An LMS download (a Moodle zip, one folder per student) lands in submitted/<student>/ with normalised names."""

import io
import zipfile
from datetime import datetime

import nbformat

from coursekit import collect, grading, intake, layout, student_ids
from assignments import PW2

ADA = "Ada Lovelace_1001_assignsubmission_file_/"
UPLOADED = (2026, 11, 20, 10, 0, 0)  # the time Moodle wrote on the notebook's entry


def test_names_become_folder_safe_ids():
    assert collect.student_id("Élodie N'Diaye") == "elodie-n-diaye"
    assert collect.student_id("Ada Lovelace") == "ada-lovelace"


def test_copies_of_the_notebook_get_the_released_name():
    for name in ["Copy of pw2_transformers.ipynb", "Copy_of_pw2_transformers.ipynb", "pw2_transformers (1).ipynb",
                 "pw2_transformers.ipynb"]:
        assert collect.notebook_name(name, PW2) == PW2.notebook, name
    assert collect.notebook_name("my_homework.ipynb", PW2) == "my_homework.ipynb"


def test_a_moodle_zip_is_collected_into_submitted(tmp_path):
    course = layout.copy_course(tmp_path / "course")
    grading.release(course, PW2)
    archive = course.root / "downloaded" / PW2.name / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "moodle.zip", "w") as z:
        z.writestr("Ada Lovelace_1001_assignsubmission_file_/Copy of pw2_transformers.ipynb", "{}")
        z.writestr("Élodie N'Diaye_1002_assignsubmission_file_/pw2_transformers (1).ipynb", "{}")
        z.writestr("Alan Turing_1003_assignsubmission_file_/homework.ipynb", "{}")
        z.writestr("<img src=x onerror=alert(1)>_1004_assignsubmission_file_/pw2_transformers.ipynb", "{}")
        z.writestr("王芳_1005_assignsubmission_file_/pw2_transformers.ipynb", "{}")
        z.writestr("stray.ipynb", "{}")
    grading.nbgrader(course, "zip_collect", PW2.name)
    found = sorted(str(p.relative_to(course.submitted)) for p in course.submitted.rglob("*.ipynb"))
    assert found == ["ada-lovelace/pw2_transformers/pw2_transformers.ipynb",
                     "alan-turing/pw2_transformers/homework.ipynb",
                     "elodie-n-diaye/pw2_transformers/pw2_transformers.ipynb",
                     "img-src-x-onerror-alert-1/pw2_transformers/pw2_transformers.ipynb",
                     "participant-1005/pw2_transformers/pw2_transformers.ipynb"]
    assert all(not student_ids.problem(p.split("/")[0]) for p in found), "every folder is named by a valid student id"


def _moodle_zip(course: layout.Course, entries: dict[str, tuple[tuple[int, ...], bytes]]) -> None:
    """downloaded/<assignment>/archive/moodle.zip with these entries: name -> (entry time, content)."""
    archive = course.root / "downloaded" / PW2.name / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "moodle.zip", "w") as z:
        for name, (date_time, content) in entries.items():
            z.writestr(zipfile.ZipInfo(name, date_time=date_time), content)


def _nested_zip() -> bytes:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("pw2_transformers.ipynb", nbformat.writes(nbformat.v4.new_notebook()))
    return inner.getvalue()


def test_only_notebooks_are_collected_with_the_zip_entrys_time_never_an_uploaded_timestamp(tmp_path, capfd):
    course = layout.copy_course(tmp_path / "course")
    notebook = nbformat.writes(nbformat.v4.new_notebook()).encode()
    _moodle_zip(course, {
        ADA + "Copy of pw2_transformers.ipynb": (UPLOADED, notebook),
        ADA + "timestamp.txt": ((2026, 11, 20, 10, 0, 0), b"2020-01-01 00:00:00"),
        ADA + "solution.py": (UPLOADED, b"print('hi')\n"),
        ADA + "backup.zip": (UPLOADED, _nested_zip()),
        ADA + "../../../../escaped.ipynb": (UPLOADED, notebook),
    })
    grading.nbgrader(course, "zip_collect", PW2.name)
    log = capfd.readouterr().err
    folder = layout.submission_dir(course.submitted, "ada-lovelace", PW2)
    assert sorted(p.name for p in folder.iterdir()) == [PW2.notebook, "timestamp.txt"]
    assert (folder / "timestamp.txt").read_text() == "2026-11-20 10:00:00", "written by zip_collect from the zip's time"
    assert not list(course.root.parent.rglob("escaped.ipynb"))
    for name in ["timestamp.txt", "solution.py", "backup.zip"]:
        assert f"Skipped {ADA}{name} in moodle.zip: not a notebook" in log, name
    assert "escaped.ipynb in moodle.zip: its path leads out of the zip's folder" in log

    [verdict] = intake.stage(course, PW2)
    staged = layout.submission_dir(course.staging(PW2), "ada-lovelace", PW2) / "timestamp.txt"
    assert verdict.gradable and staged.read_text() == "2026-11-20 10:00:00"


def test_of_two_copies_of_the_notebook_the_later_upload_is_collected_and_its_time_counts_for_its_student_only(tmp_path):
    course = layout.copy_course(tmp_path / "course")
    _moodle_zip(course, {ADA + "Copy of pw2_transformers.ipynb": (UPLOADED, b'{"first": 1}'),
                         ADA + "pw2_transformers (1).ipynb": ((2026, 11, 21, 23, 59, 58), b'{"second": 2}')})
    grading.nbgrader(course, "zip_collect", PW2.name)
    notebook = layout.submission_dir(course.submitted, "ada-lovelace", PW2) / PW2.notebook
    assert notebook.read_bytes() == b'{"second": 2}'
    times = collect.submission_times(course.submitted)
    collected = notebook.read_bytes()
    assert collect.submission_time(times, "ada-lovelace", [collected]) == collect.Stamp(datetime(2026, 11, 21, 23, 59, 58),
                                                                          collect.SOURCE_ZIP)
    assert collect.submission_time(times, "bob", [collected]) is None, "a notebook's time counts for its own student only"
    assert collect.submission_time(times, "ada-lovelace", [b"{ }"]) is None, "and only while it is the one collected"


def test_make_collect_files_a_zip_under_the_assignment_it_names_and_asks_which_when_there_are_several(
        tmp_path, monkeypatch, capsys):
    from assignments import PW3
    from coursekit import cli

    course = layout.copy_course(tmp_path / "course")
    monkeypatch.setattr(cli, "COURSE", course)
    download = tmp_path / "pw3-download.zip"
    with zipfile.ZipFile(download, "w") as z:
        z.writestr("Ada Lovelace_1001_assignsubmission_file_/Copy of pw3_decoding.ipynb", "{}")
    assert cli.main(["collect", str(download)]) == 2
    assert "which assignment is this zip for?" in capsys.readouterr().err
    assert cli.main(["collect", str(tmp_path / "missing.zip"), "--assignment", PW3.name]) == 2
    assert cli.main(["collect", str(download), "--assignment", PW3.name]) == 0
    assert sorted(str(p.relative_to(course.submitted)) for p in course.submitted.rglob("*.ipynb")) == [
        "ada-lovelace/pw3_decoding/pw3_decoding.ipynb"]
    assert download.is_file(), "the instructor's download is copied, never moved"
