"""Hand-ins as they really arrive, made from a clean one (a release notebook with answers written in).

Each function returns a damaged copy and says which real-world change it reproduces. The Colab ones
follow what a Colab save does to an nbgrader notebook (see shared/notes/nbgrader.md, "Google Colab").
"""

import copy
import json
import random

import nbformat

from coursekit import answers


def _index(nb, grade_id):
    return next(i for i, c in enumerate(nb.cells) if answers.grade_id(c) == grade_id)


def colab_saved(nb: nbformat.NotebookNode) -> str:
    """A notebook as Colab saves it, returned as the JSON text that Colab writes.

    Reproduces: notebook metadata `colab` (provenance, gpuType, include_colab_link), `accelerator: GPU` and a
    `widgets` state without the standard "state" wrapper; on every cell a `metadata.id`; on code cells
    `metadata.colab` ({base_uri, height}), `outputId` and `executionInfo` (with the student's name and user
    id); `deletable`/`editable` flags dropped; outputs kept, error outputs with `"evalue": "ignored"`;
    the "Open in Colab" badge cell (`metadata.id = "view-in-github"`, no top-level id) added at the top.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.update({
        "colab": {"provenance": [], "gpuType": "T4", "include_colab_link": True},
        "accelerator": "GPU",
        "widgets": {"application/vnd.jupyter.widget-state+json": {"0a1b2c": {"model_name": "HBoxModel", "state": {}}}},
    })
    for n, cell in enumerate(nb.cells):
        cell.metadata["id"] = cell.id
        cell.metadata.pop("deletable", None)
        cell.metadata.pop("editable", None)
        if cell.cell_type == "code":
            cell.metadata["colab"] = {"base_uri": "https://localhost:8080/", "height": 35}
            cell.metadata["outputId"] = f"{n:08x}-0000-4000-8000-000000000000"
            cell.metadata["executionInfo"] = {"elapsed": 12, "status": "ok", "timestamp": 1764000000000 + n,
                                              "user": {"displayName": "Ada Lovelace", "userId": "0123456789"},
                                              "user_tz": -60}
            cell.execution_count = n
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran in Colab\n")]
            if "raise NotImplementedError" in cell.source:
                cell.outputs.append(nbformat.v4.new_output("error", ename="NotImplementedError", evalue="ignored", traceback=[]))
    data = json.loads(nbformat.writes(nb))
    data["cells"].insert(0, {"cell_type": "markdown", "metadata": {"id": "view-in-github", "colab_type": "text"},
                             "source": ["<a href=\"https://colab.research.google.com/github/x/y/blob/main/pw2.ipynb\">"
                                        "<img src=\"https://colab.research.google.com/assets/colab-badge.svg\"/></a>"]})
    return json.dumps(data, indent=1, ensure_ascii=False)


def colab_saved_old_format(nb: nbformat.NotebookNode) -> str:
    """A Colab save of a notebook older than nbformat 4.5: `nbformat_minor` 0, cell ids only in the metadata."""
    data = json.loads(colab_saved(nb))
    data["nbformat_minor"] = 0
    for cell in data["cells"]:
        cell.pop("id", None)
    return json.dumps(data, indent=1, ensure_ascii=False)


def metadata_lost(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Every cell copied into a fresh notebook: no nbgrader metadata, new ids (what "copy all cells" gives)."""
    nb = copy.deepcopy(nb)
    rng = random.Random(0)
    for cell in nb.cells:
        cell.metadata = {}
        cell.id = "%08x" % rng.getrandbits(32)
    return nb


def duplicated(nb: nbformat.NotebookNode, *grade_ids: str) -> nbformat.NotebookNode:
    """The given cells copied and pasted just below themselves, metadata and id included."""
    nb = copy.deepcopy(nb)
    for grade_id in grade_ids:
        i = _index(nb, grade_id)
        nb.cells.insert(i + 1, copy.deepcopy(nb.cells[i]))
    return nb


def deleted(nb: nbformat.NotebookNode, *grade_ids: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if answers.grade_id(c) not in grade_ids]
    return nb


def moved_to_end(nb: nbformat.NotebookNode, *grade_ids: str) -> nbformat.NotebookNode:
    """The given cells dragged to the end of the notebook."""
    nb = copy.deepcopy(nb)
    moved = [c for c in nb.cells if answers.grade_id(c) in grade_ids]
    nb.cells = [c for c in nb.cells if answers.grade_id(c) not in grade_ids] + moved
    return nb


def edited(nb: nbformat.NotebookNode, grade_id: str, source: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells[_index(nb, grade_id)].source = source
    return nb


def inserted_after(nb: nbformat.NotebookNode, grade_id: str, source: str) -> nbformat.NotebookNode:
    """A cell of the student's own, inserted below the given cell."""
    nb = copy.deepcopy(nb)
    nb.cells.insert(_index(nb, grade_id) + 1, nbformat.v4.new_code_cell(source))
    return nb


def tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    """Every test cell tagged, as a student can do in Jupyter's property inspector."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata.setdefault("tags", []).append(tag)
    return nb


def near_copies(nb: nbformat.NotebookNode, grade_id: str, copies: int) -> nbformat.NotebookNode:
    """A hostile hand-in: `copies` cells put first, each the given (long) cell with a sixth of its characters
    shuffled. Each has the cell's length and characters, so difflib's cheap checks pass and only its full, slow
    comparison can tell them apart from the cell (which it does: each is about 85% similar)."""
    nb = copy.deepcopy(nb)
    source = nb.cells[_index(nb, grade_id)].source
    rng = random.Random(0)
    cells = []
    for _ in range(copies):
        chars = list(source)
        places = rng.sample(range(len(chars)), len(chars) // 6)
        picked = [chars[i] for i in places]
        rng.shuffle(picked)
        for i, char in zip(places, picked, strict=True):
            chars[i] = char
        cells.append(nbformat.v4.new_code_cell("".join(chars)))
    nb.cells[:0] = cells
    return nb
