"""A PostgreSQL gradebook: GRADEBOOK_URL points nbgrader and coursekit at it, and the whole cycle (release,
grading, feedback, export, the formgrader) gives the same grades as with the default SQLite gradebook.db.

The tests start a PostgreSQL server of their own (Debian's postgresql, which `make setup` installs), listening
only on a unix socket in a temporary folder, and fail if it is not installed."""

import stat
import subprocess

import pytest

import gradebooks
from browser import chromium_page
from coursekit import gradebook_backup, layout, results as scores
from assignments import PW2


def test_sqlite_gradebook_db_is_the_default(tmp_path):
    with gradebooks.gradebook_url(None):
        assert layout.gradebook_url(tmp_path) == f"sqlite:///{tmp_path}/gradebook.db"
        assert scores.db_url(layout.Course(tmp_path)) == f"sqlite:///{tmp_path}/gradebook.db"
    with gradebooks.gradebook_url(""):  # `make grade GRADEBOOK_URL=` is the default too
        assert layout.gradebook_url(tmp_path) == f"sqlite:///{tmp_path}/gradebook.db"


@pytest.mark.parametrize("url, expected", [
    # SQLAlchemy 2.1 would look for psycopg 3 behind a bare postgresql://; requirements.txt installs psycopg2
    ("postgresql://grader:secret@db.example.org:5432/transformers", "postgresql+psycopg2://grader:secret@db.example.org:5432/transformers"),
    ("postgres://grader@/transformers?host=/var/run/postgresql", "postgresql+psycopg2://grader@/transformers?host=/var/run/postgresql"),
    ("postgresql+psycopg2://grader@db/transformers", "postgresql+psycopg2://grader@db/transformers"),
    ("sqlite:////srv/grading/transformers.db", "sqlite:////srv/grading/transformers.db"),
])
def test_GRADEBOOK_URL_names_another_gradebook(tmp_path, url, expected):
    with gradebooks.gradebook_url(url):
        assert layout.gradebook_url(tmp_path) == expected
        assert scores.db_url(layout.Course(tmp_path)) == expected


@pytest.fixture(scope="module")
def postgres():
    with gradebooks.postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def on_postgres(postgres, tmp_path_factory) -> gradebooks.SmallCourse:
    """The small course graded through the whole cycle with its gradebook in PostgreSQL."""
    url = postgres.create_database("transformers")
    return gradebooks.grade_small_course(tmp_path_factory.mktemp("on-postgres") / "course", url)


@pytest.fixture(scope="module")
def on_sqlite(tmp_path_factory) -> gradebooks.SmallCourse:
    return gradebooks.small_sqlite_course(tmp_path_factory)


def test_the_cycle_on_postgresql_grades_fairly(on_postgres):
    assert on_postgres.url.startswith("postgresql+psycopg2://")
    results = on_postgres.results
    assert (results["ada-lovelace"].status, results["ada-lovelace"].score) == ("graded", 100)
    assert results["alan-turing"].status == "graded" and 0 < results["alan-turing"].score < 100
    assert results["grace-hopper"].status == "not graded" and "is empty" in results["grace-hopper"].note


def test_the_grades_are_in_postgresql_and_no_sqlite_file_is_made(on_postgres, postgres):
    assert not on_postgres.course.gradebook.exists()
    assert postgres.query("transformers", "SELECT name FROM assignment") == [(PW2.name,)]
    assert postgres.query("transformers", "SELECT id FROM student ORDER BY id") == [(s,) for s in sorted(gradebooks.HANDINS)]
    totals = dict(postgres.query("transformers", """
        SELECT submitted_assignment.student_id, SUM(COALESCE(grade.manual_score, grade.auto_score))
        FROM grade JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id
        JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id
        GROUP BY submitted_assignment.student_id"""))
    assert totals == {s: on_postgres.results[s].score for s in gradebooks.GRADED_STUDENTS}


def test_a_postgresql_gradebook_is_dumped_before_the_batch_and_restores_as_it_was(on_postgres, postgres):
    """pg_dump's copy, taken before the batch wrote anything: the released assignment, no student yet. pg_restore
    (the README's command) puts it into an empty database."""
    dumps = gradebook_backup.snapshots(on_postgres.course, PW2)
    assert len(dumps) == 1 and dumps[0].suffix == ".dump" and stat.S_IMODE(dumps[0].stat().st_mode) == 0o600
    restored = postgres.create_database("restored")
    done = subprocess.run(["pg_restore", "--no-owner", f"--dbname={gradebook_backup.libpq_url(restored)}", str(dumps[0])],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert postgres.query("restored", "SELECT name FROM assignment") == [(PW2.name,)]
    assert postgres.query("restored", "SELECT count(*) FROM student") == [(0,)]
    assert postgres.query("transformers", "SELECT count(*) FROM student") == [(len(gradebooks.HANDINS),)]


def test_postgresql_and_sqlite_give_the_same_grades(on_postgres, on_sqlite):
    assert on_sqlite.url.startswith("sqlite:///") and on_sqlite.course.gradebook.is_file()
    assert on_postgres.results == on_sqlite.results       # coursekit's report: scores per exercise, notes
    assert on_postgres.cell_scores == on_sqlite.cell_scores  # the gradebook, cell by cell
    assert on_postgres.export == on_sqlite.export            # make export's grades.csv
    assert [row["student_id"] for row in on_postgres.export] == sorted(gradebooks.HANDINS)


def test_feedback_is_generated_from_the_postgresql_gradebook(on_postgres):
    for student in gradebooks.GRADED_STUDENTS:
        html = layout.submission_dir(on_postgres.course.feedback, student, PW2) / f"{PW2.notebook_id}.html"
        assert html.is_file(), student
        score = on_postgres.results[student].score
        assert f"Your score: {score:g} / 100" in html.read_text(encoding="utf-8"), student


def test_the_formgrader_reads_the_postgresql_gradebook(on_postgres, tmp_path):
    with gradebooks.gradebook_url(on_postgres.url), gradebooks.jupyter_lab(on_postgres.course, tmp_path) as lab, \
            chromium_page() as page:
        submissions = gradebooks.formgrader_submissions(page, lab)
        assert gradebooks.visible_alerts(page) == []
        assert page.js_errors == []
    for student in gradebooks.GRADED_STUDENTS:
        result = on_postgres.results[student]
        assert submissions[student] == {"status": "graded", "score": f"{result.score:g} / {result.max_score:g}"}
