"""The instructor notebook and its percent-format text twin (source_text/), kept in sync.

The text twin is what humans review and diff; the notebook is what nbgrader reads. Converting in
either direction is deterministic: cell ids come from the nbgrader grade_id (or the cell's position),
metadata is limited to the kernelspec, nbgrader's and cell tags (`grader-only`), and the collapsed view of a
cell whose first line is a Colab form title (TITLE); there are no outputs.

The helpers cell carries a copy of the checks engine, coursekit/notebook_checks.py, between two marker lines:
`embed_checks_engine` writes the module's current text there (`make notebook` does), so that a student in
Colab needs nothing but the notebook.
"""

import copy
import re
from pathlib import Path

import jupytext
import nbformat

from . import notebook_checks

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


# A code cell whose first line is a Colab form title (`# @title ...`: the helpers, the check cells) shows that line
# only: Colab's form view hides its code, JupyterLab collapses its input; its outputs stay in view.
TITLE = "# @title "
COLLAPSED = {"cellView": "form", "jupyter": {"source_hidden": True}}


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `nb` as committed under source/: no outputs, stable ids, only kernelspec and nbgrader metadata (and
    the collapsed view of a cell with a title, see TITLE)."""
    out = nbformat.v4.new_notebook()
    out.metadata = {"kernelspec": nb.metadata.get("kernelspec", KERNELSPEC)}
    for index, cell in enumerate(nb.cells):
        metadata = {key: cell.metadata[key] for key in ("nbgrader", "tags") if cell.metadata.get(key)}
        if cell.cell_type == "code" and cell.source.startswith(TITLE):
            metadata.update(copy.deepcopy(COLLAPSED))
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source, metadata=metadata)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source, metadata=metadata)
        else:
            new = nbformat.v4.new_raw_cell(cell.source, metadata=metadata)
        new.id = metadata.get("nbgrader", {}).get("grade_id") or f"cell-{index}"
        out.cells.append(new)
    return out


def notebook_from_text(text_path: Path) -> nbformat.NotebookNode:
    return clean(jupytext.read(text_path, fmt="py:percent"))


def text_from_notebook(nb: nbformat.NotebookNode) -> str:
    nb = clean(nb)
    nb.metadata["jupytext"] = {"notebook_metadata_filter": "kernelspec,-jupytext", "cell_metadata_filter": "nbgrader,tags,-all"}
    return jupytext.writes(nb, fmt="py:percent")


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def same_cells(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    """Whether two notebooks hold the same cells (type, source, nbgrader metadata) and kernelspec."""
    return clean(a) == clean(b)


ENGINE_BEGIN = "# --- begin coursekit/notebook_checks.py (written here by `make notebook`) ---"
ENGINE_END = "# --- end coursekit/notebook_checks.py ---"
_ENGINE = re.compile(re.escape(ENGINE_BEGIN) + r"\n.*?" + re.escape(ENGINE_END), re.S)


def engine_text() -> str:
    return Path(notebook_checks.__file__).read_text(encoding="utf-8").rstrip("\n")


def embedded_engine(source: str) -> str | None:
    """The copy of the checks engine in a helpers cell's source, or None without the markers."""
    match = _ENGINE.search(source)
    return match.group(0)[len(ENGINE_BEGIN) + 1:-len(ENGINE_END)].rstrip("\n") if match else None


def embed_checks_engine(source: str) -> str:
    """The helpers cell's source with the current checks engine between its markers."""
    if embedded_engine(source) is None:
        raise ValueError(f"the helpers cell has no {ENGINE_BEGIN!r} ... {ENGINE_END!r} lines")
    return _ENGINE.sub(lambda _: f"{ENGINE_BEGIN}\n{engine_text()}\n{ENGINE_END}", source)
