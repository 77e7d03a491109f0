"""Due dates, the late penalty and extensions (coursekit/deadlines.py): the rule, times with their time zones, the
extensions file checked before anything is graded, where submission times come from, and one small grading whose
penalties agree in the gradebook, grading.csv, grades.csv, Moodle's worksheet, the class report and the feedback."""

import contextlib
import csv
import hashlib
import io
import shutil
import zipfile
from datetime import datetime, timedelta, timezone

import nbformat
import pytest
from nbgrader.api import Gradebook

from assignments import PW3, max_points
from coursekit import answers, cli, collect, deadlines, intake, layout

DAY = 86400
RULE = deadlines.LatePenalty()  # nbgrader_config.py's: 10% per started day, at most 5 days


@pytest.mark.parametrize("seconds_late, fraction", [
    (0, 0.0),                      # on time
    (60, 0.1),                     # one minute late: one started day
    (DAY, 0.1),                    # exactly one day
    (2 * DAY + 3 * 3600, 0.3),     # 2 days 3 hours: three started days
    (5 * DAY, 0.5),                # the last day that still earns points
    (5 * DAY + 1, 1.0),            # beyond the window: every point
    (40 * DAY, 1.0),
])
def test_the_penalty_is_ten_percent_of_the_earned_points_per_started_day_for_five_days(seconds_late, fraction):
    assert RULE.fraction(seconds_late) == pytest.approx(fraction)
    assert RULE.late_submission_penalty("ada", 20.0, seconds_late) == pytest.approx(20 * fraction)


def test_the_rule_is_configurable_and_is_the_course_s_nbgrader_plugin():
    strict = deadlines.LatePenalty(percent_per_day=25, max_days=2)
    assert [strict.fraction(s) for s in (1, DAY + 1, 2 * DAY, 2 * DAY + 1)] == [0.25, 0.5, 0.5, 1.0]
    config = deadlines._settings(str(layout.COURSE.root))[2]
    assert config.AssignLatePenalties.plugin_class is deadlines.LatePenalty
    assert (config.LatePenalty.percent_per_day, config.LatePenalty.max_days) == (10, 5)


def test_nbgrader_s_late_penalty_step_builds_the_plugin_with_the_course_s_settings():
    from nbgrader.preprocessors import AssignLatePenalties
    from traitlets.config import Config

    config = Config(deadlines._settings(str(layout.COURSE.root))[2])
    config.LatePenalty.percent_per_day = 20
    step = AssignLatePenalties(config=config)
    step.init_plugin()  # what nbgrader does for every notebook it autogrades
    assert isinstance(step.plugin_inst, deadlines.LatePenalty)
    assert step.plugin_inst.late_submission_penalty("ada", 50, 2 * DAY + 1) == pytest.approx(30)


def test_the_late_text_says_how_late_and_what_it_cost():
    assert deadlines.late_text(2 * DAY + 3 * 3600, 4.5, RULE) == "submitted 2 days 3 hours late: −30% (−4.5 points)"
    assert deadlines.late_text(60, 1, RULE) == "submitted 1 minute late: −10% (−1 point)"
    assert deadlines.late_text(6 * DAY + 7200, 12, RULE) == "submitted 6 days 2 hours late, more than 5 days: −100% (−12 points)"
    assert deadlines.late_text(0, 0, RULE) == ""


@pytest.mark.parametrize("text", ["2026-12-15 23:59 Europe/Paris", "2026-12-15T23:59+01:00", "2026-12-15T22:59Z",
                                  "2026-12-15 22:59:00 UTC"])
def test_times_are_read_with_their_zone_as_utc(text):
    assert deadlines.parse_time(text) == datetime(2026, 12, 15, 22, 59, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, says", [("2026-12-15 23:59", "has no time zone"),
                                        ("2026-12-15 23:59 Mars/Olympus", "unknown time zone"),
                                        ("next friday", "is not a date and time")])
def test_a_time_without_a_known_zone_is_refused_with_the_accepted_forms(text, says):
    with pytest.raises(deadlines.DeadlineError, match=says) as error:
        deadlines.parse_time(text)
    assert "Europe/Paris" in str(error.value) or "unknown time zone" in str(error.value)


def test_a_due_date_in_paris_across_the_daylight_saving_change_counts_real_hours():
    # Clocks go forward in Paris on 2026-03-29 at 02:00: 24 hours on the wall clock are 23 real hours.
    due = deadlines.parse_time("2026-03-28 23:30 Europe/Paris")
    handed_in = deadlines.parse_time("2026-03-29 23:45 Europe/Paris")
    assert handed_in - due == timedelta(hours=23, minutes=15)
    assert RULE.started_days((handed_in - due).total_seconds()) == 1, "not 2: the wall clock moved 24 h 15"
    assert deadlines.to_gradebook(due) == datetime(2026, 3, 28, 22, 30)


# The extensions file, checked whole.

def _extensions(course: layout.Course, text: str) -> None:
    path = deadlines.extensions_path(course, PW3)
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")


DUE = deadlines.parse_time("2026-12-01 23:59 Europe/Paris")


@pytest.mark.parametrize("text, says", [
    ("name,until\nada,2026-12-03 23:59 Europe/Paris\n", "line 1: the header must be student,due,reason"),
    ("student,due,reason\nada,2026-12-03 23:59 Europe/Paris\n", "line 2: expected 3 columns"),
    ("student,due,reason\nada,2026-12-03 23:59,illness\n", "line 2: '2026-12-03 23:59' has no time zone"),
    ("student,due,reason\nada,2026-12-03 23:59 Europe/Paris,ok\nzed,2026-12-03 23:59 Europe/Paris,?\n",
     "line 3: unknown student 'zed'"),
    ("student,due,reason\nada,2026-11-03 23:59 Europe/Paris,early\n", "line 2: ada's new due date"),
    ("student,due,reason\nada,2026-12-03T23:59Z,a\nada,2026-12-04T23:59Z,b\n", "line 3: a second extension"),
])
def test_a_bad_extensions_file_is_one_error_naming_the_file_and_line(tmp_path, text, says):
    course = layout.Course(tmp_path)
    _extensions(course, text)
    with pytest.raises(deadlines.DeadlineError, match=says) as error:
        deadlines.read_extensions(course, PW3, {"ada"}, DUE)
    assert str(error.value).startswith("extensions/pw3_decoding.csv")


def test_extensions_need_a_due_date(tmp_path):
    course = layout.Course(tmp_path)
    _extensions(course, "student,due,reason\nada,2026-12-03 23:59 Europe/Paris,ill\n")
    with pytest.raises(deadlines.DeadlineError, match="has no due date"):
        deadlines.read_extensions(course, PW3, {"ada"}, None)
    found = deadlines.read_extensions(course, PW3, {"ada"}, DUE)
    assert found["ada"] == deadlines.Extension("ada", deadlines.parse_time("2026-12-03T22:59Z"), "ill")


# Where submission times come from.

def _course(tmp_path, tz: str = "Europe/Paris") -> layout.Course:
    course = layout.copy_course(tmp_path / "course")
    with (course.root / "nbgrader_config.py").open("a") as f:
        f.write(f"\nc.Deadlines.lms_timezone = {tz!r}\n")
    return course


def _release(course: layout.Course) -> str:
    return course.release_notebook(PW3).read_text(encoding="utf-8")


def _solution(course: layout.Course) -> str:
    source = nbformat.read(course.source_notebook(PW3), as_version=4)
    release = nbformat.read(course.release_notebook(PW3), as_version=4)
    return nbformat.writes(answers.fill(release, answers.solution_answers(source)))


def test_a_timestamp_from_nbgrader_s_exchange_is_trusted_only_if_the_exchange_has_that_hand_in(tmp_path, monkeypatch):
    course = _course(tmp_path)
    notebook, stamp = _release(course), "2026-12-02 08:30:00.000000 UTC"
    inbound = course.root / "build" / "exchange" / "transformers" / "inbound"
    for student, exchanged in [("ada", True), ("bob", False), ("cy", True)]:
        folder = layout.submission_dir(course.submitted, student, PW3)
        folder.mkdir(parents=True)
        (folder / PW3.notebook).write_text(notebook)
        (folder / "timestamp.txt").write_text(stamp)
        if exchanged:  # what nbgrader submit left in the exchange, and nbgrader collect copied
            entry = inbound / f"{student}+{PW3}+{stamp}+f00d"
            entry.mkdir(parents=True)
            (entry / "timestamp.txt").write_text(stamp)
            (entry / PW3.notebook).write_text(notebook if student == "ada" else notebook + " ")
    expected = collect.Stamp(datetime(2026, 12, 2, 8, 30, tzinfo=timezone.utc), collect.SOURCE_EXCHANGE)
    assert intake.exchange_time(course, PW3, "ada", layout.submission_dir(course.submitted, "ada", PW3)) == expected
    assert intake.exchange_time(course, PW3, "bob", layout.submission_dir(course.submitted, "bob", PW3)) is None
    assert intake.exchange_time(course, PW3, "cy", layout.submission_dir(course.submitted, "cy", PW3)) is None, \
        "another notebook than the one the exchange holds"
    monkeypatch.setattr(deadlines, "due_of", lambda *_: deadlines.parse_time("2026-12-02 09:00 Europe/Paris"))
    verdicts = {v.student: v for v in intake.stage(course, PW3)}
    staged = {s: layout.submission_dir(course.staging(PW3), s, PW3) / "timestamp.txt" for s in verdicts}
    assert staged["ada"].read_text() == "2026-12-02 08:30:00+00:00"
    assert "submitted 2026-12-02 09:30 Europe/Paris (from nbgrader's exchange)" in verdicts["ada"].note
    assert not staged["bob"].exists() and "timestamp.txt was ignored" in verdicts["bob"].note


WORKSHEET_HEADER = ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
                    "Grade can be changed", "Last modified (submission)", "Last modified (grade)", "Feedback comments"]


def _moodle_download(tmp_path, notebooks: dict[str, tuple[str, str, tuple, str]]) -> tuple:
    """A Moodle zip and grading worksheet: participant -> (full name, worksheet date, zip entry time, notebook)."""
    download, worksheet = tmp_path / "download.zip", tmp_path / "worksheet.csv"
    with zipfile.ZipFile(download, "w") as z:
        for participant, (name, _, entry, notebook) in notebooks.items():
            z.writestr(zipfile.ZipInfo(f"{name}_{participant}_assignsubmission_file_/Copy of {PW3.notebook}", entry),
                       notebook)
    with worksheet.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(WORKSHEET_HEADER)
        for participant, (name, date, _, _) in notebooks.items():
            writer.writerow([f"Participant {participant}", name, "", "Submitted for grading", "", "20", "Yes", date, "-", ""])
    return download, worksheet


def test_the_worksheet_s_dates_are_read_by_participant(tmp_path):
    _, worksheet = _moodle_download(tmp_path, {
        "1001": ("Ada Lovelace", "Tuesday, 1 December 2026, 11:58 PM", (2026, 11, 20, 10, 0, 0), ""),
        "1002": ("Bob Moog", "-", (2026, 12, 2, 10, 0, 0), ""),
        "1003": ("Cy Twombly", "Thursday, 3 December 2026, 14:05", (2026, 12, 2, 10, 0, 0), ""),
        "1004": ("Di Ana", "last week", (2026, 12, 2, 10, 0, 0), ""),
    })
    assert collect.worksheet_times(worksheet) == {"1001": datetime(2026, 12, 1, 23, 58),
                                                  "1003": datetime(2026, 12, 3, 14, 5)}
    worksheet.write_text("Name,Grade\nAda,3\n")
    assert collect.worksheet_times(worksheet) == {}


def test_times_without_a_zone_stop_grading_an_assignment_with_a_due_date(tmp_path, monkeypatch):
    course = _course(tmp_path, tz="")
    folder = layout.submission_dir(course.submitted, "ada", PW3)
    folder.mkdir(parents=True)
    (folder / PW3.notebook).write_text(_release(course))
    collect._record_time(course.submitted, "ada", hashlib.sha256((folder / PW3.notebook).read_bytes()).hexdigest(),
                         collect.Stamp(datetime(2026, 12, 1, 23, 0), collect.SOURCE_ZIP))
    monkeypatch.setattr(deadlines, "due_of", lambda *_: None)
    intake.stage(course, PW3)  # no due date: graded as before, with the zip's time as it is
    assert (layout.submission_dir(course.staging(PW3), "ada", PW3) / "timestamp.txt").read_text() == "2026-12-01 23:00:00"
    monkeypatch.setattr(deadlines, "due_of", lambda *_: DUE)
    with pytest.raises(deadlines.DeadlineError, match="ada have no time zone.*c.Deadlines.lms_timezone"):
        intake.stage(course, PW3)


# One small grading, through the commands an instructor types.

def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def graded_late(tmp_path_factory, course):
    """Two pw3 hand-ins from a Moodle download, due 2026-12-01 23:59 Paris time: 2 days 3 hours late (its time from
    the worksheet), and late but within an extension (the worksheet has no date for it: the zip's time); graded, then
    feedback, export (with the worksheet) and report. (On time: the unit tests above.)"""
    tmp_path, released = tmp_path_factory.mktemp("deadlines"), course
    course = _course(tmp_path)
    if released.gradebook.is_file():  # the session's course released every assignment: its gradebook knows pw3
        shutil.copy(released.gradebook, course.gradebook)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(cli, "COURSE", course)
    try:
        solution = _solution(course)
        download, worksheet = _moodle_download(tmp_path, {
            "1002": ("Bob Moog", "Friday, 4 December 2026, 2:59 AM", (2026, 12, 1, 20, 0, 0), solution),
            "1003": ("Cy Twombly", "-", (2026, 12, 3, 10, 0, 0), solution),
        })
        assert cli.main(["due", "--assignment", PW3.name, "2026-12-01 23:59 Europe/Paris"]) == 0  # releases it if need be
        assert cli.main(["collect", str(download), "--assignment", PW3.name, "--worksheet", str(worksheet)]) == 0
        _extensions(course, "student,due,reason\ncy-twombly,2026-12-04 23:59 Europe/Paris,medical certificate\n")
        submitted = {str(p): _digest(p) for p in course.submitted.rglob("*") if p.is_file()}
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert cli.main(["grade", "--assignment", PW3.name, "--jobs", "2"]) == 0
        assert {str(p): _digest(p) for p in course.submitted.rglob("*") if p.is_file()} == submitted
        for command in (["feedback"], ["report"], ["export", "--moodle-worksheet", str(worksheet)]):
            assert cli.main([*command, "--assignment", PW3.name]) == 0
    finally:
        monkeypatch.undo()
    return course, worksheet, printed.getvalue()


LATE = "submitted 2 days 3 hours late: −30%"


def test_the_penalty_is_the_same_in_the_gradebook_and_every_output(graded_late):
    course, worksheet, _ = graded_late
    full = max_points(PW3)
    with Gradebook(course.gradebook_url) as gb:
        penalty = {s: gb.find_submission_notebook(PW3.notebook_id, PW3.name, s).late_submission_penalty or 0
                   for s in ("bob-moog", "cy-twombly")}
        cy = gb.find_submission(PW3.name, "cy-twombly")
        assert deadlines.from_gradebook(cy.duedate) == deadlines.parse_time("2026-12-04 23:59 Europe/Paris")
    assert penalty == {"bob-moog": pytest.approx(0.3 * full), "cy-twombly": 0}
    score = {"bob-moog": full - penalty["bob-moog"], "cy-twombly": full}

    with (course.reports_of(PW3) / "grading.csv").open(newline="", encoding="utf-8") as f:
        grading_rows = {r["student"]: r for r in csv.DictReader(f)}
    with (course.reports / "grades.csv").open(newline="", encoding="utf-8") as f:
        grades_rows = {r["student_id"]: r for r in csv.DictReader(f)}
    with (course.reports_of(PW3) / f"moodle_{worksheet.name}").open(newline="", encoding="utf-8") as f:
        moodle = {r["Identifier"]: r for r in csv.DictReader(f)}
    with (course.reports_of(PW3) / "needs_a_look.csv").open(newline="", encoding="utf-8") as f:
        look = {r["student"]: r for r in csv.DictReader(f)}
    for student, participant in [("bob-moog", "1002"), ("cy-twombly", "1003")]:
        row = grading_rows[student]
        assert (float(row["score"]), float(row["late_penalty"])) == pytest.approx((score[student], penalty[student]))
        assert (float(grades_rows[student][f"{PW3} total"]), float(grades_rows[student][f"{PW3} late_penalty"])) \
            == pytest.approx((score[student], penalty[student]))
        assert float(moodle[f"Participant {participant}"]["Grade"]) == pytest.approx(score[student])
    points = f"(−{penalty['bob-moog']:g} points)"
    assert f"{LATE} {points}" in grading_rows["bob-moog"]["note"]
    assert f"{LATE} {points}" in moodle["Participant 1002"]["Feedback comments"]
    assert f"{LATE} {points}" in look["bob-moog"]["note"]
    assert grading_rows["cy-twombly"]["note"] == (
        "submitted 2026-12-03 10:00 Europe/Paris (from the file's time in Moodle's zip, the last resort); "
        "extension to 2026-12-04 23:59 Europe/Paris (medical certificate)")
    assert "late" not in moodle["Participant 1003"]["Feedback comments"]
    page = (course.feedback / "bob-moog" / PW3.name / f"{PW3}.html").read_text(encoding="utf-8")
    assert f"Your score: {score['bob-moog']:g} / {full:g}</strong> ({LATE} {points})" in page
    page = (course.feedback / "cy-twombly" / PW3.name / f"{PW3}.html").read_text(encoding="utf-8")
    assert f"Your score: {full:g} / {full:g}</strong></p>" in page


def test_make_due_prints_the_due_date_the_rule_and_the_extensions(graded_late, monkeypatch, capsys):
    course, _, graded = graded_late
    extension = "extension: cy-twombly, extension to 2026-12-04 23:59 Europe/Paris (medical certificate)"
    assert "bob-moog" in graded and extension in graded, "make grade reports the extensions it applied"
    monkeypatch.setattr(cli, "COURSE", course)
    assert cli.main(["due", "--assignment", PW3.name]) == 0
    printed = capsys.readouterr().out
    assert "pw3_decoding: due 2026-12-01 23:59 Europe/Paris; late penalty: 10% of the earned points per started day" \
        in printed
    assert extension in printed
    assert cli.main(["due", "--assignment", PW3.name, "2026-12-01 23:59"]) == 2
    assert "has no time zone" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["student,due\ncy-twombly,2026-12-05 23:59 Europe/Paris\n",
                                  "student,due,reason\ncy-twombly,2026-12-05 23:59,ill\n",
                                  "student,due,reason\nzed,2026-12-05 23:59 Europe/Paris,ill\n"])
def test_a_bad_extensions_file_stops_make_grade_before_any_grade_changes(graded_late, monkeypatch, capsys, text):
    course, _, _ = graded_late
    monkeypatch.setattr(cli, "COURSE", course)
    path = deadlines.extensions_path(course, PW3)
    good = path.read_text(encoding="utf-8")
    before = {p: _digest(p) for p in [course.gradebook, course.reports_of(PW3) / "grading.csv"]}
    try:
        path.write_text(text, encoding="utf-8")
        assert cli.main(["grade", "--assignment", PW3.name]) == 2
    finally:
        path.write_text(good, encoding="utf-8")
    error = capsys.readouterr().err
    assert "ERROR: pw3_decoding: extensions/pw3_decoding.csv, line " in error and "Nothing was graded" in error
    assert {p: _digest(p) for p in before} == before


def test_the_staged_times_are_utc_and_nbgrader_counts_from_them(graded_late):
    course, _, _ = graded_late
    staged = layout.submission_dir(course.staging(PW3), "bob-moog", PW3) / "timestamp.txt"
    assert staged.read_text() == "2026-12-04 01:59:00+00:00", "Friday 4 December 2026, 2:59 AM in Paris"
    with Gradebook(course.gradebook_url) as gb:
        assert gb.find_submission(PW3.name, "bob-moog").total_seconds_late == 2 * DAY + 3 * 3600


def test_an_extension_removed_from_the_file_is_removed_from_the_gradebook(graded_late, tmp_path):
    course, _, _ = graded_late
    url = f"sqlite:///{shutil.copy(course.gradebook, tmp_path / 'gradebook.db')}"
    deadlines.apply_extensions(url, PW3, {})
    with Gradebook(url) as gb:
        cy = gb.find_submission(PW3.name, "cy-twombly")
        assert cy.extension is None and cy.total_seconds_late > 0
