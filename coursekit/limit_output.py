"""Caps the size of every output of an autograded notebook: one function, used while the notebook runs
(coursekit.scoring.GradedExecute, on each output as it arrives) and after (the LimitOutputSize preprocessor, on
streams merged at the end of a cell).

nbgrader's own LimitOutput counts lines, so one `print` of 100 MB on a single line still makes a 100 MB
autograded notebook (and feedback page). This cuts any text output to `max_chars`, and replaces any rich
output (an image, HTML) larger than that with a note. An output cut once is not cut again.
"""

import re

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Integer

_CUT_NOTE = re.compile(r"\n… output cut: [\d,]+ characters printed, the first [\d,]+ kept\n$")


def cut_text(text: str, max_chars: int) -> str:
    if len(text) <= max_chars or (_CUT_NOTE.search(text) and len(text) <= max_chars + 200):
        return text
    return text[:max_chars] + f"\n… output cut: {len(text):,} characters printed, the first {max_chars:,} kept\n"


def cut_output(output, max_chars: int) -> None:
    """Cuts one notebook output (stream, error or rich) to about `max_chars` characters, in place."""
    if output.get("output_type") == "stream":
        output["text"] = cut_text(output["text"], max_chars)
    elif output.get("output_type") == "error":
        output["evalue"] = cut_text(output.get("evalue", ""), max_chars)
        output["traceback"] = [cut_text(t, max_chars) for t in output.get("traceback", [])[:50]]
    elif "data" in output:
        size = sum(len(str(v)) for v in output["data"].values())
        if size > max_chars:
            output["data"] = {"text/plain": f"… output removed: {size:,} characters of {', '.join(output['data'])}"}
            output["metadata"] = {}


class LimitOutputSize(Preprocessor):
    enabled = Bool(True, help="nbconvert's preprocessors are off unless enabled").tag(config=True)
    max_chars = Integer(20_000, help="the most characters kept of one output").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            cut_output(output, self.max_chars)
        return cell, resources
