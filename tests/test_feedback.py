"""Feedback for students: one HTML page per graded hand-in, with the score of every exercise and the reason
of every lost point first, and never a line of the hidden tests."""

import html
import re
from html.parser import HTMLParser

import nbformat
import pytest

from coursekit import checks, feedback, layout, scoring
from assignments import PW2
from browser import chromium_page


class _Text(HTMLParser):
    """The text a reader sees in a page (syntax highlighting splits code into many tags), without scripts and styles."""

    def __init__(self):
        super().__init__()
        self.parts, self.hidden_depth = [], 0

    def handle_starttag(self, tag, attrs):
        self.hidden_depth += tag in ("script", "style")

    def handle_endtag(self, tag):
        self.hidden_depth -= tag in ("script", "style")

    def handle_data(self, data):
        if not self.hidden_depth:
            self.parts.append(data)


def page_text(path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return "".join(parser.parts)


def lines(nb) -> set[str]:
    return {line.strip() for cell in nb.cells for line in cell.source.splitlines() if line.strip()}


def hidden_test_lines(source_nb) -> set[str]:
    """Every line inside the hidden test regions and the grader-only cells of the instructor notebook (but lines of
    punctuation only, `})`)."""
    hidden = set()
    for cell in source_nb.cells:
        regions = [cell.source] if scoring.is_grader_only(cell) else \
            re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.S)
        for region in regions:
            hidden |= {line.strip() for line in region.splitlines() if any(ch.isalnum() for ch in line)}
    return hidden


def feedback_pages(graded):
    return {student: layout.submission_dir(graded.course.feedback, student, PW2) / "pw2_transformers.html"
            for student in graded.results}


def test_every_graded_student_gets_a_feedback_page_and_no_one_else(graded):
    for student, page in feedback_pages(graded).items():
        assert page.is_file() == (graded.results[student].status == "graded"), student


def test_no_feedback_page_contains_a_line_of_the_hidden_tests(graded, source_nb, release_nb):
    """Lines the student's own notebook also has (`else:`, `loss.backward()` in their answer) don't count."""
    hidden = hidden_test_lines(source_nb) - lines(release_nb)
    assert len(hidden) > 300, "the hidden tests were not found in the instructor notebook"
    for student, page in feedback_pages(graded).items():
        if page.is_file():
            shown = {line.strip() for line in page_text(page).splitlines()}
            staged = layout.submission_dir(graded.course.staging(PW2), student, PW2) / PW2.notebook
            handed_in = nbformat.read(staged, as_version=4)
            leaked = sorted((hidden - lines(handed_in)) & shown)
            assert not leaked, f"{student}'s feedback shows hidden test code: {leaked[:5]}"


def test_the_feedback_starts_with_the_points_of_every_exercise(graded):
    text = page_text(feedback_pages(graded)["demo-mistakes"])
    summary = text[text.index("Your score per exercise"):text.index("Practical work 2")]
    for exercise, points in graded.results["demo-mistakes"].exercises.items():
        assert re.search(rf"{exercise}\s*{points:g} / \d+", summary), exercise


def test_the_feedback_says_why_each_point_was_lost(graded):
    page = feedback_pages(graded)["demo-mistakes"]
    text = page_text(page)
    summary = text[text.index("Your score per exercise"):text.index("Practical work 2")]
    notebook = nbformat.read(layout.submission_dir(graded.course.autograded, "demo-mistakes", PW2) / PW2.notebook,
                             as_version=4)
    failed = [c for cs in checks.by_test_cell(notebook).values() for c in cs if not c.passed]
    assert failed
    for check in failed:
        assert f"✗ {check.description}" in summary and check.reason in summary, check


def test_the_solutions_feedback_says_every_check_passed(graded):
    text = page_text(feedback_pages(graded)["demo-solution"])
    summary = text[text.index("Your score per exercise"):text.index("Practical work 2")]
    assert summary.count("all checks passed") == 10 and "✗" not in summary


@pytest.mark.parametrize("printed", ["<script>alert(1)</script>", "a | b"])
def test_what_student_code_prints_cannot_inject_html_or_break_the_table(printed):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "", metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "test_decode", "points": 10, "score": 0}},
        outputs=[nbformat.v4.new_output("stream", name="stdout", text=f"  ✗ decode works [0/10]: {printed}\n")])])
    table = feedback.summary(nb)
    assert "<script>" not in table
    assert html.escape(printed).replace("|", "&#124;") in table
    assert [line for line in table.splitlines() if line.startswith("|")][-1].count("|") == 4


def test_the_feedback_folder_holds_the_page_and_nothing_else(graded):
    """nbgrader would copy every other file of the autograded folder: not to students. (That folder holds only what
    nbgrader wrote: the model the notebook trains stays in the kernel's scratch folder, see test_boundary_files.py.)"""
    pages = {s: p for s, p in feedback_pages(graded).items() if p.is_file()}
    assert pages
    for student, page in pages.items():
        shipped = {str(p.relative_to(page.parent)) for p in page.parent.rglob("*")}
        assert shipped == {PW2.notebook.replace(".ipynb", ".html")}, student
    autograded = layout.submission_dir(graded.course.autograded, "demo-solution", PW2)
    assert {p.name for p in autograded.iterdir()} <= {PW2.notebook, "timestamp.txt"}, \
        "the autograded folder holds the notebook nbgrader wrote, not the kernel's files (the trained model)"


def test_the_maths_of_the_feedback_renders_offline(graded):
    """The maths is MathML written into the page, laid out by the browser: nothing to fetch, no script to run."""
    page_file = feedback_pages(graded)["demo-mistakes"]
    markup = page_file.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*mathjax", markup, re.I) and "MathJax.Hub" not in markup
    with chromium_page() as page:
        fetched = []
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (fetched.append(route.request.url), route.abort("internetdisconnected")))
        page.goto(page_file.as_uri())
        assert page.locator("math").count() > 20
        # softmax(QK^T / sqrt(d_k)): the fraction is laid out, its numerator above its denominator
        fraction = page.locator("math[display=block] mfrac").first
        numerator, denominator = (fraction.locator(":scope > *").nth(i).bounding_box() for i in (0, 1))
        assert numerator["height"] > 0 and numerator["y"] + numerator["height"] <= denominator["y"] + 1
        text = page.inner_text("body")
        assert "\\frac{QK^T}" not in text and "$Q$" not in text and "\\sqrt{d_k}" not in text
        assert not page.js_errors and not [url for url in fetched if "mathjax" in url.lower()]


def test_the_top_of_the_feedback_names_every_exercise_on_one_line(graded):
    """No list of unnamed "Test cell" links, no 0/0 row for the helpers cell; the points never wrap, even narrow."""
    page_file = feedback_pages(graded)["demo-mistakes"]
    text = page_text(page_file)
    assert "Test cell" not in text and "0.0 / 0.0" not in text[:text.index("Practical work 2")]
    with chromium_page() as page:
        page.set_viewport_size({"width": 480, "height": 800})
        page.goto(page_file.as_uri())
        cells = page.eval_on_selector_all(".coursekit-summary tbody td:nth-child(2)", """tds => tds.map(td => {
            const range = document.createRange(); range.selectNodeContents(td);
            return [td.innerText, getComputedStyle(td).whiteSpace, new Set([...range.getClientRects()].map(r => r.top)).size];
        })""")
    assert [c[0] for c in cells] == [f"{p:g} / {m:g}" for p, m in zip(graded.results["demo-mistakes"].exercises.values(),
                                                                       _maxima(graded), strict=True)]
    assert all(white == "nowrap" and lines == 1 for _, white, lines in cells), cells


def _maxima(graded) -> list[float]:
    source = nbformat.read(graded.course.source_notebook(PW2), as_version=4)
    return [cell.metadata["nbgrader"]["points"] for cell in source.cells
            if cell.metadata.get("nbgrader", {}).get("grade") and cell.metadata["nbgrader"].get("points")
            and not cell.metadata["nbgrader"].get("solution")]


def test_latex_becomes_mathml_without_links_and_unknown_latex_stays_readable():
    assert feedback.mathml(r"\frac{a}{b}", display=True).startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" '
                                                                    'display="block">')
    assert "<mfrac>" in feedback.mathml(r"\frac{a}{b}", display=False)
    assert "href" not in feedback.mathml(r"\href{javascript:alert(1)}{x}", display=False)
    assert "<script" not in feedback.mathml("<script>alert(1)</script>", display=False)
    assert feedback.mathml("<b>x^", display=False) == '<code class="coursekit-tex">$&lt;b&gt;x^$</code>', \
        "LaTeX that cannot be converted is shown as typed, escaped"
