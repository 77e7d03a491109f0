"""Outputs are data, never code: what a student's code displays, and the Markdown they write, cannot run a script,
load anything from outside or act with the instructor's Jupyter session, in the feedback page or the formgrader.

Every defence is tested by an attack. A hostile hand-in (the solution, plus a cell of the student's whose outputs
carry scripts in every form a notebook can hold, and a Markdown cell of theirs with the same tricks) is graded
through the whole cycle, as `make grade feedback` does (gradebooks.grade_small_course): its feedback page is opened
in headless Chromium from the file nbgrader wrote, and its formgrader view in JupyterLab. Every payload would record
that it ran (window.pwned, document.title) and, in the formgrader, write a file into the course through the Jupyter
contents API with the page's XSRF cookie. The same pages made from the notebook as it was before sanitising show
that each attack is live."""

import base64
import json
import re
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import nbgrader
import pytest
from nbconvert.exporters import HTMLExporter
from nbgrader.api import Gradebook

import gradebooks
from browser import chromium_page
from coursekit import layout, samples, sanitize
from assignments import PW2

EVIL = "evil.example"  # every external load a payload tries goes there
FORMGRADER = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"


def payload(name: str) -> str:
    """JavaScript (without double quotes) that records it ran, and writes pwned-<name>.txt into whatever Jupyter
    server serves the page, with the page's XSRF cookie."""
    return (f"window.pwned=(window.pwned||[]).concat(['{name}']);document.title='pwned';"
            f"fetch('/api/contents/pwned-{name}.txt',{{method:'PUT',headers:{{'Content-Type':'application/json',"
            "'X-XSRFToken':(document.cookie.match(/_xsrf=([^;]+)/)||[])[1]},"
            "body:JSON.stringify({type:'file',format:'text',content:'pwned'})})")


def png_base64() -> str:
    """A real 1×1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode("ascii")


# What the student's cell displays, as (data, metadata) bundles: what IPython's HTML(), Javascript(), SVG(),
# Markdown() and Latex() give, and raw bundles that no display class would make but `display(..., raw=True)` does.
HOSTILE_OUTPUTS = [
    ({"text/html": f"<b>html-output-visible</b><script>{payload('html-script')}</script>",
      "text/plain": "<IPython.core.display.HTML object>"}, {}),
    ({"application/javascript": payload("javascript"), "text/plain": "<IPython.core.display.Javascript object>"}, {}),
    ({"image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{payload("svg-onload")}"><circle r="5"/></svg>',
      "text/plain": "<IPython.core.display.SVG object>"}, {}),
    ({"text/html": f'<img src="x" onerror="{payload("html-onerror")}">', "text/plain": "img"}, {}),
    ({"text/html": f'<img src="https://{EVIL}/html-remote.png">', "text/plain": "remote image"}, {}),
    ({"text/html": f'<div style="background:url(https://{EVIL}/html-css.png)">css</div>', "text/plain": "css"}, {}),
    ({"text/markdown": f'<img src="x" onerror="{payload("markdown-output")}">',
      "text/plain": "<IPython.core.display.Markdown object>"}, {}),
    ({"text/latex": f'<img src="x" onerror="{payload("latex")}">', "text/plain": "<IPython.core.display.Latex object>"}, {}),
    ({"application/vnd.jupyter.widget-view+json": {"model_id": "0", "version_major": 2, "version_minor": 0},
      "text/plain": "IntSlider(value=0)"}, {}),
    ({"image/png": f'x" onerror="{payload("fake-png")}', "text/plain": "fake png"}, {}),
    ({"image/png": png_base64()}, {"image/png": {"width": f"1 onerror={payload('png-width').replace(' ', '')}"}}),
]

HOSTILE_MARKDOWN = f"""# student-markdown-visible

<img src="x" onerror="{payload('md-onerror')}"> <script>{payload('md-script')}</script>

[click me](javascript:{payload('md-link')}) and <a href="javascript:{payload('md-raw-link')}">this one</a>

![remote image alt](https://{EVIL}/md-remote.png) ![protocol-relative alt](//{EVIL}/md-relative.png)

<span style="background:url(https://{EVIL}/md-css.png)">styled</span>
<style>body {{ background: url(https://{EVIL}/md-style.png) }}</style>

<iframe src="https://{EVIL}/md-frame"></iframe> <object data="https://{EVIL}/md-object"></object>
<form action="https://{EVIL}/md-form"><button>go</button></form>

<svg onload="{payload('md-svg')}"></svg>
"""

HOSTILE_CODE = ("from IPython.display import display\nimport json\n"
                f"for data, metadata in json.loads({json.dumps(json.dumps(HOSTILE_OUTPUTS))}):\n"
                "    display(data, metadata=metadata, raw=True)\n")

STUDENT = "mallory"


def hostile_handin() -> nbformat.NotebookNode:
    """The solution, with the student's own hostile cells at the end."""
    nb = samples.notebooks(layout.COURSE, PW2)["solution"]
    nb.cells += [nbformat.v4.new_code_cell(HOSTILE_CODE), nbformat.v4.new_markdown_cell(HOSTILE_MARKDOWN)]
    return nb


def unsanitised(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The autograded notebook as it would be without SanitizeNotebook: the hostile cells as they ran."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    code = next(c for c in nb.cells if c.cell_type == "code" and c.source == HOSTILE_CODE)
    code.outputs = [nbformat.v4.new_output("display_data", data=d, metadata=m) for d, m in HOSTILE_OUTPUTS]
    markdown = next(c for c in nb.cells if c.cell_type == "markdown" and "student-markdown-visible" in c.source)
    markdown.source = HOSTILE_MARKDOWN
    return nb


def release_image_urls() -> set[str]:
    release = nbformat.read(layout.COURSE.release_notebook(PW2), as_version=4)
    markdown = "\n".join(c.source for c in release.cells if c.cell_type == "markdown")
    return set(re.findall(r"!\[[^]]*\]\((https://[^)\s]+)", markdown))


# The pages' own external loads: MathJax (nbgrader's templates), and the instructor's images in the release.
PAGE_OWN_URLS = {HTMLExporter().mathjax_url} | release_image_urls()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> gradebooks.SmallCourse:
    return gradebooks.grade_small_course(tmp_path_factory.mktemp("hostile") / "course", handins={STUDENT: hostile_handin()})


def autograded_path(course: layout.Course) -> Path:
    return layout.submission_dir(course.autograded, STUDENT, PW2) / PW2.notebook


def open_and_watch(page, url: str) -> list[str]:
    """Opens `url` and returns every URL the page asked for; nothing outside the machine is answered."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    page.goto(url, wait_until="load")
    page.wait_for_timeout(1500)  # onload / onerror handlers, and the fetches they would start
    return requested


def ran(page) -> list[str]:
    return page.evaluate("window.pwned || []")


def live_links(page) -> list[str]:
    return page.eval_on_selector_all("a[href]", "as => as.map(a => a.getAttribute('href'))")


# ---------------------------------------------------------------------------------------- the sanitiser itself

class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(markup: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(markup)
    return parser.tags


def test_student_markdown_keeps_no_live_tag_handler_script_link_or_external_load():
    rendered = sanitize.student_markdown(HOSTILE_MARKDOWN)
    found = tags(rendered)
    assert {t for t, _ in found} <= sanitize.ALLOWED_TAGS
    for tag, attrs in found:
        assert not [a for a in attrs if a.startswith("on") or a == "style"], (tag, attrs)
        assert not attrs.get("href", "").strip().lower().startswith(("javascript:", "data:")), attrs
        assert tag != "img", attrs  # no embedded image in it: every image is its alt text
    assert "\n" not in rendered  # one line: the page's Markdown passes it through as it is
    text = re.sub(r"<[^>]+>", "", rendered)
    assert "student-markdown-visible" in text and "[image: remote image alt]" in text
    assert "&lt;script&gt;" in text and "&lt;iframe" in text  # the student's HTML is shown as text


def test_the_page_renders_the_sanitised_markdown_exactly_as_it_is():
    rendered = sanitize.student_markdown(HOSTILE_MARKDOWN)
    assert HTMLExporter().markdown2html(nbformat.v4.new_markdown_cell(rendered), rendered).strip() == rendered


def test_the_release_markdown_is_the_instructors_and_stays_as_it_is():
    release = nbformat.read(layout.COURSE.release_notebook(PW2), as_version=4)
    nb, _ = sanitize.SanitizeNotebook(release_notebook=str(layout.COURSE.release_notebook(PW2))).preprocess(
        nbformat.from_dict(json.loads(json.dumps(release))), {})
    assert [c.source for c in nb.cells] == [c.source for c in release.cells]
    assert release_image_urls(), "the release shows images from https"


def test_outputs_keep_only_text_and_valid_images_and_their_text_plain_as_it_was():
    outputs = [nbformat.v4.new_output("display_data", data=d, metadata=m) for d, m in HOSTILE_OUTPUTS]
    outputs.append(nbformat.v4.new_output("execute_result", data={"text/plain": "3.5", "text/html": "<b>3.5</b>"},
                                          execution_count=1))
    cell = nbformat.v4.new_code_cell("", outputs=outputs)
    nb, _ = sanitize.SanitizeNotebook().preprocess(nbformat.v4.new_notebook(cells=[cell]), {})
    kept = nb.cells[0].outputs
    assert {mime for o in kept for mime in o.data} == {"text/plain", "image/png"}
    assert [o.data["image/png"] for o in kept if "image/png" in o.data] == [png_base64()]
    assert all(o.metadata == {} for o in kept), "the width with an event handler in it is gone"
    # nbgrader reads partial credit from an execute_result's text/plain: it is the same
    assert [o.data for o in kept if o.output_type == "execute_result"] == [{"text/plain": "3.5"}]
    notes = [o.data["text/plain"] for o in kept if o.data.get("text/plain", "").startswith(sanitize.NOTE_PREFIX)]
    assert len(notes) == len(HOSTILE_OUTPUTS)  # the valid PNG's width was dropped with no note; the 3.5 has one
    assert any("html-output-visible" in n for n in notes), "the HTML is shown as text"


def test_sanitising_twice_changes_nothing():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("display_data", data=d, metadata=m)
                                               for d, m in HOSTILE_OUTPUTS]),
        nbformat.v4.new_markdown_cell(HOSTILE_MARKDOWN), nbformat.v4.new_raw_cell("<script>alert(1)</script>")])
    once, _ = sanitize.SanitizeNotebook().preprocess(nb, {})
    once = json.loads(json.dumps(once))
    twice, _ = sanitize.SanitizeNotebook().preprocess(nbformat.from_dict(json.loads(json.dumps(once))), {})
    assert json.loads(json.dumps(twice)) == once


# -------------------------------------------------------------------------------------------- the feedback page

def feedback_page(course: layout.Course) -> Path:
    return layout.submission_dir(course.feedback, STUDENT, PW2) / "pw2_transformers.html"


def test_the_hostile_handin_was_graded_like_the_solution(hostile):
    assert hostile.results[STUDENT].status == "graded"
    assert hostile.results[STUDENT].score == hostile.results[STUDENT].max_score
    assert feedback_page(hostile.course).is_file()


def test_no_script_runs_and_nothing_is_fetched_in_the_feedback_page(hostile):
    with chromium_page() as page:
        requested = open_and_watch(page, feedback_page(hostile.course).as_uri())
        assert ran(page) == [] and page.title() == PW2.notebook_id
        assert [u for u in requested if not u.startswith(("file:", "data:")) and u not in PAGE_OWN_URLS] == []
        assert not [u for u in requested if EVIL in u]
        assert not [h for h in live_links(page) if h.strip().lower().startswith("javascript:")]
        assert page.locator("iframe, object, embed, form, svg").count() == 0
        text = page.inner_text("body")
        for visible in ["student-markdown-visible", "html-output-visible", "<script>", "[image: remote image alt]",
                        sanitize.NOTE_PREFIX]:
            assert visible in text, visible
        # the instructor's own Markdown is as released, its images included
        shown = set(page.eval_on_selector_all("img", "imgs => imgs.map(i => i.getAttribute('src'))"))
        assert release_image_urls() <= shown


def test_without_the_sanitiser_the_feedback_page_would_run_the_payloads(hostile, tmp_path):
    """The control: the same notebook, unsanitised, through nbgrader's feedback template."""
    nb = unsanitised(nbformat.read(autograded_path(hostile.course), as_version=4))
    for cell in nb.cells:  # what nbgrader's GetGrades adds, which the template shows
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata.nbgrader.score = cell.metadata.nbgrader.points
    exporter = HTMLExporter(template_name="feedback", extra_template_basedirs=[str(FORMGRADER / "templates")],
                            extra_template_paths=[str(FORMGRADER / "static/node_modules/bootstrap/dist/css")])
    body, _ = exporter.from_notebook_node(nb, resources={"nbgrader": {"notebook": PW2.notebook_id, "score": 0,
                                                                      "max_score": 100, "late_penalty": 0}})
    page_file = tmp_path / "unsanitised.html"
    page_file.write_text(body, encoding="utf-8")
    with chromium_page() as page:
        requested = open_and_watch(page, page_file.as_uri())
        assert {"html-script", "html-onerror", "markdown-output", "md-onerror"} <= set(ran(page))
        assert [u for u in requested if EVIL in u]


# -------------------------------------------------------------------------------------------------- the formgrader

@pytest.fixture(scope="module")
def lab(hostile, tmp_path_factory):
    with gradebooks.jupyter_lab(hostile.course, tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def submission_view(page, lab, course: layout.Course) -> list[str]:
    """The formgrader's view of the hostile hand-in, opened after the formgrader (which sets the XSRF cookie)."""
    gradebooks.formgrader_assignments(page, lab)
    with Gradebook(course.gradebook_url) as gb:
        notebook_id = gb.find_submission_notebook(PW2.notebook_id, PW2.name, STUDENT).id
    requested = open_and_watch(page, lab.page(f"/formgrader/submissions/{notebook_id}"))
    page.wait_for_selector("#notebook-container", timeout=60_000)
    return requested


def pwned_files(course: layout.Course) -> list[str]:
    return sorted(p.name for p in course.root.glob("pwned-*"))


def test_the_formgrader_view_runs_no_script_and_writes_nothing_into_the_course(hostile, lab):
    with chromium_page() as page:
        requested = submission_view(page, lab, hostile.course)
        assert "student-markdown-visible" in page.inner_text("body"), "the view shows the hand-in"
        assert ran(page) == [] and "pwned" not in page.title()
        assert pwned_files(hostile.course) == []
        assert not [u for u in requested if EVIL in u or "/api/contents/pwned" in u]
        assert [u for u in requested if not u.startswith((lab.url, "data:")) and u not in PAGE_OWN_URLS] == []


def test_without_the_sanitiser_the_formgrader_view_would_write_into_the_course(hostile, lab):
    """The control, last: the autograded notebook as it would be without SanitizeNotebook; the formgrader renders
    it from disk on every view."""
    path = autograded_path(hostile.course)
    sanitised = path.read_text(encoding="utf-8")
    try:
        nbformat.write(unsanitised(nbformat.reads(sanitised, as_version=4)), path)
        with chromium_page() as page:
            submission_view(page, lab, hostile.course)
            page.wait_for_timeout(1500)
            assert "html-script" in ran(page)
        assert "pwned-html-script.txt" in pwned_files(hostile.course)
    finally:
        path.write_text(sanitised, encoding="utf-8")
        for name in pwned_files(hostile.course):
            (hostile.course.root / name).unlink()


def test_hidden_test_markers_in_a_students_cell_are_made_inert_and_the_feedback_still_clears_the_real_ones():
    """A student's cell with nbgrader's hidden-test markers (a comment, a string, a lone BEGIN) would make the feedback's
    ClearHiddenTests fail on that student's page, or cut the student's own code: the markers no longer read as
    markers; the instructor's test cells keep theirs, which ClearHiddenTests then removes with their region."""
    from nbgrader.preprocessors import ClearHiddenTests

    source = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    release = layout.COURSE.release_notebook(PW2)
    nb = nbformat.read(release, as_version=4)
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_self_attention")
    test.source = next(c.source for c in source.cells if c.get("id") == "test_self_attention")  # as graded: hidden part back
    assert "### BEGIN HIDDEN TESTS" in test.source
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "self_attention")
    answer.source = 'MARK = "### BEGIN HIDDEN TESTS"  # a lone marker, no end\ndef self_attention(S, W_Q, W_K, W_V):\n    pass\n'
    nb, _ = sanitize.SanitizeNotebook(release_notebook=str(release)).preprocess(nb, {})
    assert "def self_attention" in answer.source and "BEGIN HIDDEN TESTS" not in answer.source
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    assert "def self_attention" in answer.source and "### END HIDDEN TESTS" not in test.source
    assert "checks.score()" in test.source and "def _self_attention_inputs(seed)" not in test.source
