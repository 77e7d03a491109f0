"""An nbgrader preprocessor that caps the size of every output of an autograded notebook.

nbgrader's own LimitOutput counts lines, so one `print` of 100 MB on a single line still makes a 100 MB
autograded notebook (and feedback page). This one cuts any text output to `max_chars`, and replaces
any rich output (an image, HTML) larger than that with a note.
"""

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Integer


class LimitOutputSize(Preprocessor):
    enabled = Bool(True, help="nbconvert's preprocessors are off unless enabled").tag(config=True)
    max_chars = Integer(20_000, help="the most characters kept of one output").tag(config=True)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[:self.max_chars] + f"\n… output cut: {len(text):,} characters printed, the first {self.max_chars:,} kept\n"

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                output.text = self._cut(output.text)
            elif output.output_type == "error":
                output.evalue = self._cut(output.evalue)
            elif "data" in output:
                size = sum(len(str(v)) for v in output.data.values())
                if size > self.max_chars:
                    output.data = {"text/plain": f"… output removed: {size:,} characters of {', '.join(output.data)}"}
        return cell, resources
