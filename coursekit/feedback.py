"""An nbgrader feedback preprocessor: a summary at the top of every student's feedback page.

nbgrader's feedback lists "Test cell (Score: 8 / 15)" entries without saying which exercise they are,
and the reasons for lost points are spread over the notebook. This puts a table first: every exercise,
its points, and each failed check with its reason (as the check lines printed them). It runs after
GetGrades (which puts the scores in the cells' metadata) and ClearHiddenTests (so that nothing here can
come from hidden test code: only printed check lines are used). Everything taken from the notebook is
HTML-escaped, since a student's code can print anything.

The page itself (`FeedbackExporter`, nbgrader's HTML exporter with the template in templates/coursekit_feedback/) is
one file that opens offline: the maths of the notebook's Markdown is written as MathML when the page is made, which
browsers render themselves (nbconvert's template would load MathJax from a CDN, and show raw LaTeX without the
network); there is no list of unnamed "Test cell" links at the top (the summary table names and links every
exercise), and the summary's points stay on one line.
"""

import html
import re
from pathlib import Path

import jinja2
import latex2mathml.converter
import nbformat
import nbgrader
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool
from traitlets.config import Config

from . import answers, checks, deadlines

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "coursekit_feedback"  # extends nbgrader's own feedback template, found in its templates folder
NBGRADER_TEMPLATES = Path(nbgrader.__file__).resolve().parent / "server_extensions" / "formgrader" / "templates"
NBGRADER_CSS = NBGRADER_TEMPLATES.parent / "static" / "node_modules" / "bootstrap" / "dist" / "css"
SUMMARY_CLASS = "coursekit-summary"


def _escape(text: str) -> str:
    """Safe in a Markdown table cell: HTML-escaped, no pipes or line breaks to break the table."""
    return html.escape(text).replace("|", "&#124;").replace("\n", " ")


def summary(nb: nbformat.NotebookNode, grades: dict | None = None) -> str:
    """The Markdown table of exercises, points and failed checks of an autograded notebook with grades, after the
    total that the gradebook holds (`grades`: GetGrades' score, max_score and late_penalty), as in grades.csv."""
    lines = []
    if grades and grades.get("max_score") is not None:
        late = deadlines.feedback_late(grades)  # "submitted 2 days 3 hours late: −30% (−4.5 points)", from the gradebook
        score = max(0.0, float(grades.get("score") or 0))  # GetGrades' score is after the late penalty
        lines += [f"**Your score: {score:g} / {float(grades['max_score']):g}**" + (f" ({late})" if late else ""), ""]
    lines += [f'<div class="{SUMMARY_CLASS}">', "", "## Your score per exercise", "",
              "| exercise | points | what to look at |", "|---|---|---|"]
    printed = checks.by_test_cell(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not (meta.get("grade") and meta.get("points") and not meta.get("solution")):
            continue
        failed = [c for c in printed.get(meta["grade_id"], []) if not c.passed]
        score = float(meta.get("score") or 0)
        if failed:
            notes = "<br>".join(f"✗ {_escape(c.description)}" + (f": {_escape(c.reason)}" if c.reason else "")
                                for c in failed)
        elif score < float(meta["points"]):
            notes = "the check cell did not finish: see its output below"
        else:
            notes = "all checks passed"
        lines.append(f"| [`{_escape(answers.exercise_of(meta['grade_id']))}`](#{meta['grade_id']}) "
                     f"| {score:g} / {float(meta['points']):g} | {notes} |")
    return "\n".join([*lines, "", "</div>"])


class ExerciseSummary(Preprocessor):
    enabled = Bool(True, help="nbconvert's preprocessors are off unless enabled").tag(config=True)

    def preprocess(self, nb, resources):
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(summary(nb, resources.get("nbgrader"))))
        return nb, resources


# ---------------------------------------------------------------------------------------------------------- maths

_LINK = re.compile(r'\s(?:href|xlink:href)="[^"]*"')


def mathml(tex: str, display: bool) -> str:
    """LaTeX as MathML (no links in it), or, when it cannot be converted, the LaTeX itself as escaped text."""
    try:
        return _LINK.sub("", latex2mathml.converter.convert(tex, display="block" if display else "inline"))
    except Exception:  # latex2mathml raises many kinds of errors on LaTeX it does not know
        delimiter = "$$" if display else "$"
        return f'<code class="coursekit-tex">{html.escape(delimiter + tex + delimiter)}</code>'


class MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, with the maths written as MathML rather than left for MathJax."""

    def block_math(self, body: str) -> str:
        return mathml(body, display=True)

    def inline_math(self, body: str) -> str:
        return mathml(body, display=False)

    def latex_environment(self, name: str, body: str) -> str:
        return mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback page (`c.GenerateFeedback.exporter_class`), with the template of templates/coursekit_feedback/
    and the maths as MathML. A student's own Markdown is HTML already (coursekit.sanitize renders it, escaped and
    cleaned), so its LaTeX is shown as the student typed it: only the release's Markdown is converted here."""

    def __init__(self, config=None, **kwargs):
        # nbgrader's GenerateFeedback configures HTMLExporter with its own template: this page's extends it
        mine = Config()
        mine.FeedbackExporter.template_name = TEMPLATE
        mine.FeedbackExporter.extra_template_basedirs = [str(NBGRADER_TEMPLATES), str(TEMPLATES)]
        # nbgrader's own paths (its page includes bootstrap.min.css), and its templates folder for `extends`
        mine.FeedbackExporter.extra_template_paths = [str(NBGRADER_CSS), str(NBGRADER_TEMPLATES)]
        merged = Config(config) if config is not None else Config()
        merged.merge(mine)
        super().__init__(config=merged, **kwargs)

    @jinja2.pass_context
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        path = context.get("resources", {}).get("metadata", {}).get("path", "")
        renderer = MathMLRenderer(escape=False, attachments=cell.get("attachments", {}), embed_images=self.embed_images,
                                  path=path, anchor_link_text=self.anchor_link_text,
                                  exclude_anchor_links=self.exclude_anchor_links, **self.lexer_options)
        return MarkdownWithMath(renderer=renderer).render(source)
