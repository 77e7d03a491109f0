"""The class report for TAs (`make report`): reports/class_report.html, one self-contained page with its plots,
and CSV files in reports/, which agree with reports/grading.csv and the check lines of the autograded notebooks.

The first tests build the report from a small hand-written course directory (fast); the others from the demo
and real-world hand-ins graded once by the `graded` fixture, and open the page in headless Chromium.
"""

import csv

import nbformat
import pytest

from browser import chromium_page, images_rendered
from conftest import autograded_notebook
from coursekit import checks, cli, layout, report, results as scores
from assignments import PW2


def read_csv(path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------ a hand-written course

def graded_cell(grade_id: str, points: float, printed: str = "") -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("checks.score()", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "grade_id": grade_id, "points": points}})
    if printed:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    return cell


def write_notebook(path, cells) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


STUDENT_OUTPUTS = {  # what each graded student's test cells printed
    "ada": ("  ✓ the output has the right shape [2/2]\n  ✓ the values are right [3/3]\n",
            "  ✓ the loss is right [5/5]\n"),
    "bob": ("  ✓ the output has the right shape [2/2]\n"
            "  ✗ the values are right [0/3]: wrong output (largest difference from the expected values: 0.123)\n",
            "  ✗ the loss is right [0/5]: the loss should be 2.3026, not 1.5\n"),
    "cy": ("  ✗ the output has the right shape [0/2]: the output should have shape (2, 3, 4), not (2, 4)\n"
           "  ✗ the values are right [0/3]: wrong output (largest difference from the expected values: 4.5e-02)\n",
           "  ✓ the loss is right [5/5]\n"),
}


@pytest.fixture
def small_course(tmp_path) -> layout.Course:
    """Two exercises (alpha: 5 points in two checks, beta: 5 points in one), three graded students, one not graded."""
    course = layout.Course(tmp_path)
    write_notebook(course.source_notebook(PW2), [graded_cell("test_alpha", 5), graded_cell("test_beta", 5)])
    for student, (alpha, beta) in STUDENT_OUTPUTS.items():
        write_notebook(layout.submission_dir(course.autograded, student, PW2) / PW2.notebook,
                       [graded_cell("test_alpha", 5, alpha), graded_cell("test_beta", 5, beta)])
    scores.write_report(course, PW2, SMALL_RESULTS)
    return course


# The small course's results, as grading recorded them (it has no gradebook to score them again).
SMALL_RESULTS = [scores.Result("ada", "graded", 10, 10, {"alpha": 5, "beta": 5}),
                 scores.Result("bob", "graded", 2, 10, {"alpha": 2, "beta": 0}, "repaired: lost metadata put back"),
                 scores.Result("cy", "graded", 5, 10, {"alpha": 0, "beta": 5}),
                 scores.Result("dee", "not graded", 0, 10, {}, "pw2_transformers.ipynb is empty")]


def test_the_report_is_written_to_reports(small_course):
    paths = report.write(small_course, PW2, SMALL_RESULTS)
    assert [p.name for p in paths] == [*report.CSV_FILES, "class_report.html"]
    assert all(p.parent == small_course.reports_of(PW2) and p.is_file() for p in paths)


def test_exercise_pass_rates_are_the_share_of_graded_hand_ins_with_full_marks(small_course):
    report.write(small_course, PW2, SMALL_RESULTS)
    rows = {r["exercise"]: r for r in read_csv(small_course.reports_of(PW2) / "exercise_pass_rates.csv")}
    assert list(rows) == ["alpha", "beta"]
    assert rows["alpha"] == {"exercise": "alpha", "max_points": "5", "graded": "3", "full_marks": "1",
                             "full_marks_rate": "0.3333", "mean_points": "2.333"}
    assert rows["beta"]["full_marks"] == "2" and rows["beta"]["full_marks_rate"] == "0.6667"


def test_check_pass_rates_count_every_named_check_of_every_test_cell(small_course):
    report.write(small_course, PW2, SMALL_RESULTS)
    rows = [(r["exercise"], r["check"], r["passed"], r["failed"], r["not_run"], r["pass_rate"])
            for r in read_csv(small_course.reports_of(PW2) / "check_pass_rates.csv")]
    assert rows == [("alpha", "the output has the right shape", "2", "1", "0", "0.6667"),
                    ("alpha", "the values are right", "1", "2", "0", "0.3333"),
                    ("beta", "the loss is right", "2", "1", "0", "0.6667")]


def test_the_same_failure_from_different_students_is_grouped_numbers_aside(small_course):
    report.write(small_course, PW2, SMALL_RESULTS)
    rows = read_csv(small_course.reports_of(PW2) / "failure_messages.csv")
    assert rows[0] == {"exercise": "alpha", "checks": "the values are right", "count": "2", "students": "bob; cy",
                       "message": "wrong output (largest difference from the expected values: …)"}
    assert {(r["checks"], r["message"], r["students"]) for r in rows[1:]} == {
        ("the output has the right shape", "the output should have shape (2, 3, 4), not (2, 4)", "cy"),
        ("the loss is right", "the loss should be 2.3026, not 1.5", "bob")}


def test_message_groups_keep_the_numbers_every_student_shares():
    messages = ["should have shape (2, 3, 4), not (2, 4, 3)", "should have shape (2, 3, 4), not (3, 4, 2)"]
    assert report.message_key(messages[0]) == report.message_key(messages[1])
    assert report.message_template(messages) == "should have shape (2, 3, 4), not (…, 4, …)"
    assert report.message_key("raised at 0x7f3a2b") == report.message_key("raised at 0x55aa01")
    assert report.message_key("difference: 0.5") != report.message_key("difference: nan")


def test_hand_ins_that_need_a_look_are_listed_with_their_reason(small_course):
    report.write(small_course, PW2, SMALL_RESULTS)
    rows = read_csv(small_course.reports_of(PW2) / "needs_a_look.csv")
    assert rows == [{"student": "bob", "status": "graded", "score": "2", "note": "repaired: lost metadata put back"},
                    {"student": "dee", "status": "not graded", "score": "", "note": "pw2_transformers.ipynb is empty"}]
    page = (small_course.reports_of(PW2) / "class_report.html").read_text()
    assert "pw2_transformers.ipynb is empty" in page.split("<h2>Hand-ins that need a look</h2>")[1]
    assert "4 hand-ins: 3 graded, 1 not graded, 0 failed." in page


def test_student_text_is_escaped_and_never_injected():
    """Student ids, check lines and notes are the students' text: a `<script>` is shown, not run."""
    evil = "<script>alert('x')</script>"
    results = [scores.Result(evil, "graded", 3, 5, {"alpha": 3}, f"note {evil}"),
               scores.Result("ok", "failed", 0, 5, {}, "nbgrader could not grade it")]
    fake = report.ClassReport(PW2, results, {"alpha": 5},
                              [report.CheckStats("alpha", f"check $x$ {evil}", 5, [], [evil])],
                              [report.Failure("alpha", f"<img src=x onerror=alert(1)> {evil}", [evil], [f"check $x$ {evil}"])])
    page = report.render(fake)
    assert "<script" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") >= 4  # the id, note, check and message
    assert page.count("<img ") == 3, "the plots render even when a label holds $ or markup"


def test_a_report_of_hostile_hand_ins_runs_no_script_in_chromium_and_shows_their_text(tmp_path):
    """The whole way, as `make report` does: student ids, notes (grading.csv) and check lines (printed by the
    student's code into the autograded notebook) that carry scripts, event handlers and external loads."""
    def run(name: str) -> str:
        return f"window.pwned=(window.pwned||[]).concat(['{name}'])"
    student = f"<img src=x onerror={run('id')}>"  # no slash: it is also a folder name
    check = f"<script>{run('check')}</script>"
    reason = f'<img src="https://evil.example/reason.png"><svg onload="{run("reason")}">'
    note = f'<iframe src="javascript:{run("note")}"></iframe><b style="background:url(https://evil.example/n.png)">n</b>'
    course = layout.Course(tmp_path)
    write_notebook(course.source_notebook(PW2), [graded_cell("test_alpha", 5)])
    write_notebook(layout.submission_dir(course.autograded, student, PW2) / PW2.notebook,
                   [graded_cell("test_alpha", 5, f"  ✗ {check} [0/5]: {reason}\n")])
    page_file = report.write(course, PW2, [scores.Result(student, "graded", 0, 5, {"alpha": 0}, note)])[-1]
    assert "<script" not in page_file.read_text() and "<iframe" not in page_file.read_text()
    with chromium_page() as page:
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_file.as_uri())
        page.wait_for_timeout(1000)
        assert page.evaluate("window.pwned || []") == []
        assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
        assert page.locator("body img:not([src^='data:image/png;base64,']), iframe, svg, script").count() == 0
        text = page.inner_text("body")
        assert all(hostile in text for hostile in (student, check, reason, note))


def test_without_a_grading_report_the_command_says_to_grade_first(tmp_path, monkeypatch, capsys):
    with pytest.raises(report.NothingGraded, match="run `make grade` first"):
        report.collect(layout.Course(tmp_path), PW2)
    monkeypatch.setattr(cli, "COURSE", layout.Course(tmp_path))
    assert cli.main(["report"]) == 1
    assert "ERROR: No grading report yet" in capsys.readouterr().err


# --------------------------------------------------------------------------------- the graded demo batch

@pytest.fixture(scope="module")
def class_report(graded) -> dict:
    """The report of the graded batch, built with the same function as `make report`."""
    return {p.name: p for p in report.write(graded.course, PW2)}


def test_exercise_pass_rates_agree_with_the_grading_report(graded, class_report):
    results = scores.read_report(graded.course.reports_of(PW2) / "grading.csv")
    graded_results = [r for r in results if r.status == "graded"]
    rows = read_csv(class_report["exercise_pass_rates.csv"])
    assert [r["exercise"] for r in rows] == list(graded.results["demo-solution"].exercises)
    for row in rows:
        top = float(row["max_points"])
        full = sum(r.exercises[row["exercise"]] == top for r in graded_results)
        assert (int(row["graded"]), int(row["full_marks"])) == (len(graded_results), full), row
        assert float(row["full_marks_rate"]) == pytest.approx(full / len(graded_results), abs=1e-4)
        mean = sum(r.exercises[row["exercise"]] for r in graded_results) / len(graded_results)
        assert float(row["mean_points"]) == pytest.approx(mean, rel=1e-3)


def test_every_check_of_the_solution_is_counted(graded, class_report):
    solution = checks.by_test_cell(autograded_notebook(graded, "demo-solution"))
    rows = read_csv(class_report["check_pass_rates.csv"])
    assert [r["check"] for r in rows] == [c.description for cell in solution.values() for c in cell]
    graded_count = sum(r.status == "graded" for r in graded.results.values())
    for row in rows:
        assert int(row["passed"]) + int(row["failed"]) + int(row["not_run"]) == graded_count
        assert int(row["passed"]) >= 1, "the solution passes every check"


def test_the_demo_mistakes_failed_checks_are_among_the_failure_messages(graded, class_report):
    """Every check the demo failed is named in a row that lists the demo, and every such row names one of them (a
    row also names the checks where other students got the same message)."""
    rows = [r for r in read_csv(class_report["failure_messages.csv"]) if "demo-mistakes" in r["students"].split("; ")]
    failed = {(test_id.removeprefix("test_"), c.description)
              for test_id, cell in checks.by_test_cell(autograded_notebook(graded, "demo-mistakes")).items()
              for c in cell if not c.passed}
    named = [{(r["exercise"], check) for check in r["checks"].split("; ")} for r in rows]
    assert failed and failed <= set().union(*named)
    assert all(row & failed for row in named)
    messages = " ".join(r["message"] for r in rows if "demo-mistakes" in r["students"])
    assert "the scores are not scaled" in messages and "padded positions are counted in the loss" in messages


def test_the_page_lists_the_hand_ins_that_were_not_graded_with_their_reason(graded, class_report):
    section = class_report["class_report.html"].read_text().split("<h2>Hand-ins that need a look</h2>")[1]
    rows = {r["student"]: r for r in read_csv(class_report["needs_a_look.csv"])}
    for student, result in graded.results.items():
        if result.status != "graded":
            assert rows[student]["status"] == result.status and rows[student]["note"] == result.note
            assert f"<td>{student}</td><td>{result.status}</td>" in section, student


def test_the_page_renders_in_headless_chromium_with_its_plots_and_nothing_fetched(class_report):
    path = class_report["class_report.html"]
    with chromium_page() as page:
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        assert page.js_errors == []
        headings = page.eval_on_selector_all("h1, h2", "hs => hs.map(h => h.textContent)")
        assert headings == ["Class report: pw2_transformers", "Score distribution", "Pass rates per exercise",
                            "Pass rates per check", "Most frequent failure messages", "Hand-ins that need a look"]
        images = images_rendered(page)
        assert len(images) >= 3
        assert all(alt and width > 0 and height > 0 for alt, width, height in images), images
        external = [url for url in requests if not url.startswith(("file:", "data:"))]
        assert external == [], external
