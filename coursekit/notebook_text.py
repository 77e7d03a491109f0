"""The instructor notebook and its percent-format text twin (source_text/), kept in sync.

The text twin is what humans review and diff; the notebook is what nbgrader reads. Converting in
either direction is deterministic: cell ids come from the nbgrader grade_id (or the cell's position),
metadata is limited to the kernelspec and nbgrader's, and there are no outputs.
"""

from pathlib import Path

import jupytext
import nbformat

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `nb` as committed under source/: no outputs, stable ids, only kernelspec and nbgrader metadata."""
    out = nbformat.v4.new_notebook()
    out.metadata = {"kernelspec": nb.metadata.get("kernelspec", KERNELSPEC)}
    for index, cell in enumerate(nb.cells):
        metadata = {"nbgrader": cell.metadata["nbgrader"]} if "nbgrader" in cell.metadata else {}
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
    nb.metadata["jupytext"] = {"notebook_metadata_filter": "kernelspec,-jupytext", "cell_metadata_filter": "nbgrader,-all"}
    return jupytext.writes(nb, fmt="py:percent")


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def same_cells(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    """Whether two notebooks hold the same cells (type, source, nbgrader metadata) and kernelspec."""
    return clean(a) == clean(b)
