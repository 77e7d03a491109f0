"""An nbgrader preprocessor that makes an autograded notebook safe to open: its outputs are data, never code.

Everything a student's code prints or displays, and every cell they wrote, ends up in pages that TAs and the
instructor open in their browsers: the feedback page, and the formgrader's submission view, which runs with
the instructor's Jupyter session (a script there can write into the course through the contents API). Both
render the autograded notebook on disk, so this runs right after the notebook is executed, and once more
before the feedback is rendered:

- Outputs keep text (`text/plain`) and PNG/JPEG images that are valid base64 of what they claim to be. Anything
  that can carry code (HTML, JavaScript, SVG, Markdown, LaTeX, widget views, `application/vnd.*`, anything
  unknown) is not rendered: a one-line note above the output says so, and shows the markup as text when the
  output has no text of its own. An output's `text/plain` is never changed (nbgrader reads partial credit
  from it), and image metadata keeps only numeric width and height (the templates write them unquoted).
- The student's own Markdown cells (any Markdown not in the release notebook) are rendered here, with their raw
  HTML escaped, and cleaned with bleach: no script, event handler, `javascript:` link, iframe, object, form,
  style, or external load; an image that is not an embedded PNG/JPEG is replaced by its alt text. The cell then
  holds that HTML on one line, which Markdown passes through as it is. The student's raw cells are escaped.
- The release's Markdown (the instructor's, with its own https images) is left as it is.
"""

import base64
import binascii
import html
import json
import os
import re

import bleach
import nbformat
from bleach.html5lib_shim import Filter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.preprocessors import Preprocessor
from nbgrader.coursedir import CourseDirectory
from traitlets import Bool, Unicode

# ------------------------------------------------------------------------------------------------ outputs

IMAGE_SIGNATURES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
SIZE = re.compile(r"\d{1,5}")
DEFAULT_REPR = re.compile(r"<[\w.]+ object(?: at 0x[0-9a-fA-F]+)?>")  # what IPython shows for HTML(...), SVG(...)
NOTE_PREFIX = "⚠ not rendered"


def valid_image(mime: str, data) -> str | None:
    """The base64 text of an image output, without whitespace, if it decodes to an image of type `mime`."""
    if mime not in IMAGE_SIGNATURES or not isinstance(data, str):
        return None
    compact = re.sub(r"\s+", "", data)
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    return compact if raw.startswith(IMAGE_SIGNATURES[mime]) else None


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return json.dumps(value, indent=1, default=str)


def _image_metadata(metadata: dict) -> dict:
    """Only width and height, and only as whole numbers: the templates write them into the tag unquoted."""
    return {k: int(v) for k, v in (metadata or {}).items() if k in ("width", "height") and SIZE.fullmatch(str(v))}


def sanitize_output(output: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The output as it may be shown: itself when it is already safe; else the note and what is left of it."""
    if output.get("output_type") not in ("display_data", "execute_result"):
        return [output]  # streams and errors are text, which every template escapes
    data, metadata = output.get("data", {}), output.get("metadata", {})
    kept, dropped = {}, []
    for mime, value in data.items():
        if mime == "text/plain":
            kept[mime] = _as_text(value)
        elif (image := valid_image(mime, value)) is not None:
            kept[mime] = image
        else:
            dropped.append(f"{mime}, not a valid image" if mime in IMAGE_SIGNATURES else mime)
    kept_metadata = {m: size for m in kept if m in IMAGE_SIGNATURES and (size := _image_metadata(metadata.get(m)))}
    if not dropped and kept_metadata == metadata:
        output.data = kept
        return [output]
    output.data, output.metadata = kept, kept_metadata
    text = kept.get("text/plain", "")
    note = f"{NOTE_PREFIX} ({'; '.join(dropped)}): this output is shown as text" if dropped else ""
    shows_markup = bool(dropped) and (not text.strip() or DEFAULT_REPR.fullmatch(text.strip()) is not None)
    if shows_markup:
        note += ":\n" + next(_as_text(v) for m, v in data.items() if m not in kept)
    outputs = [nbformat.v4.new_output("display_data", data={"text/plain": note})] if note else []
    # an execute_result stays, whatever it holds (nbgrader reads partial credit from it); a displayed
    # `<IPython.core.display.HTML object>` says nothing the note doesn't
    if kept and not (shows_markup and output.output_type == "display_data" and set(kept) == {"text/plain"}):
        outputs.append(output)
    return outputs


# ----------------------------------------------------------------------------------------------- Markdown

ALLOWED_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "b", "i", "del", "s", "sup", "sub",
                "code", "pre", "blockquote", "ul", "ol", "li", "dl", "dt", "dd", "a", "img", "span", "div",
                "table", "thead", "tbody", "tr", "th", "td"}
ALLOWED_ATTRIBUTES = {"a": ["href", "title"], "img": ["src", "alt", "title"], "span": ["class"], "div": ["class"],
                      "pre": ["class"], "code": ["class"], **{f"h{n}": ["id"] for n in range(1, 7)}}
# bleach checks these on href and src; data: is for embedded images only (see _EmbeddedImagesOnly)
ALLOWED_PROTOCOLS = {"http", "https", "mailto", "data"}
EMBEDDED_IMAGE = re.compile(r"data:(image/png|image/jpeg);base64,(.*)", re.S)
STUDENT_HTML_START = '<div class="coursekit-student-markdown">'


class _EmbeddedImagesOnly(Filter):
    """Runs after bleach's own filter: an <img> that is not an embedded, valid PNG or JPEG becomes its alt text
    (nothing is fetched from anywhere), and a link to a data: URL loses its href."""

    def __iter__(self):
        for token in super().__iter__():
            attrs = token.get("data") if token["type"] in ("StartTag", "EmptyTag") else None
            if attrs is not None and token["name"] == "img":
                match = EMBEDDED_IMAGE.fullmatch(attrs.get((None, "src"), ""))
                if not (match and valid_image(match.group(1), match.group(2))):
                    alt = attrs.get((None, "alt"), "")
                    if alt:
                        yield {"type": "Characters", "data": f"[image: {alt}]"}
                    continue
            if attrs is not None and token["name"] == "a" and attrs.get((None, "href"), "").lower().startswith("data:"):
                del attrs[(None, "href")]
            yield token


_CLEANER = bleach.sanitizer.Cleaner(tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, protocols=ALLOWED_PROTOCOLS,
                                    strip=False, strip_comments=True, filters=[_EmbeddedImagesOnly])


def clean_html(markup: str) -> str:
    """HTML with only harmless tags and attributes left (the others escaped into text), and no external load."""
    return _CLEANER.clean(markup)


def student_markdown(source: str) -> str:
    """A student's Markdown as safe HTML on a single line: Markdown passes such a line through unchanged when the
    page renders it again, so nothing in it is parsed twice. Raw HTML in it shows as text."""
    renderer = IPythonRenderer(escape=True, allow_harmful_protocols=False, exclude_anchor_links=True)
    return f"{STUDENT_HTML_START}{clean_one_line(MarkdownWithMath(renderer=renderer).render(source))}</div>"


def student_text(source: str) -> str:
    """A student's raw cell as safe HTML on a single line: its text, preformatted."""
    return f"{STUDENT_HTML_START}{clean_one_line(f'<pre>{html.escape(source)}</pre>')}</div>"


def clean_one_line(markup: str) -> str:
    """clean_html, on one line: a line break becomes the character reference &#10;, which is the same text."""
    return clean_html(markup).replace("\r", "").replace("\n", "&#10;")


def is_sanitised(source: str) -> bool:
    return source.startswith(STUDENT_HTML_START)


# nbgrader's hidden-test markers in a cell of the student's: the feedback's ClearHiddenTests would take them for an
# instructor's region (and fail on one without its end, losing the student's feedback page). A no-break space
# between the two words keeps the line as the student sees it, and no longer a marker.
MARKER = re.compile(r"(BEGIN|END) HIDDEN TESTS")


def inert_markers(source: str) -> str:
    return MARKER.sub("\\1 HIDDEN\u00a0TESTS", source)


# ------------------------------------------------------------------------------------------- preprocessor

class SanitizeNotebook(Preprocessor):
    enabled = Bool(True, help="nbconvert's preprocessors are off unless enabled").tag(config=True)
    release_notebook = Unicode("", help="the release notebook whose Markdown is the instructor's; by default the "
                                        "course's release/<assignment>/<notebook>.ipynb").tag(config=True)

    def _release_text(self, resources: dict) -> tuple[set[str], set[str], set[str]]:
        """The sources of the release notebook's Markdown cells and raw cells, and the grade_ids of its test cells:
        nothing else is the instructor's."""
        path = self.release_notebook
        if not path:
            nbgrader = resources.get("nbgrader", {})
            if not (nbgrader.get("assignment") and nbgrader.get("notebook")):
                return set(), set(), set()
            coursedir = CourseDirectory(config=self.config)
            folder = coursedir.format_path(coursedir.release_directory, ".", nbgrader["assignment"])
            path = os.path.join(folder, nbgrader["notebook"] + ".ipynb")
        if not os.path.isfile(path):
            self.log.warning("SanitizeNotebook: no release notebook at %s: every Markdown cell is sanitised", path)
            return set(), set(), set()
        release = nbformat.read(path, as_version=4)
        tests = {c.metadata["nbgrader"].get("grade_id") for c in release.cells if c.cell_type == "code"
                 and c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")}
        return ({c.source for c in release.cells if c.cell_type == "markdown"},
                {c.source for c in release.cells if c.cell_type == "raw"}, tests - {None})

    def preprocess(self, nb, resources):
        instructor_markdown, instructor_raw, instructor_tests = self._release_text(resources)
        nb.metadata.pop("widgets", None)  # widget state: the templates load widget scripts for it
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [safe for output in cell.get("outputs", []) for safe in sanitize_output(output)]
                if cell.metadata.get("nbgrader", {}).get("grade_id") not in instructor_tests:
                    cell.source = inert_markers(cell.source)
            elif cell.cell_type == "markdown" and cell.source not in instructor_markdown:
                # sanitised already (the feedback runs this again): cleaned once more, which changes nothing
                cell.source = clean_one_line(cell.source) if is_sanitised(cell.source) else student_markdown(cell.source)
                cell.pop("attachments", None)
            elif cell.cell_type == "raw" and cell.source not in instructor_raw:
                # shown as text, in a Markdown cell of its own (a raw cell's HTML would be rendered)
                cell.cell_type, cell.source = "markdown", student_text(cell.source)
                cell.metadata.pop("raw_mimetype", None)
        return nb, resources
