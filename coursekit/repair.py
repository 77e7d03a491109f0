"""Rebuilds a student's notebook on the release, so that nbgrader grades what the student wrote.

Colab and copy-paste damage notebooks in ways that knock nbgrader over: lost nbgrader metadata (the
hidden tests never run), duplicated graded cells (the whole batch aborts), deleted or edited test
cells, reordered cells. The repaired notebook is the release notebook, cell for cell, with:
- each exercise cell's source taken from the student's matching cell;
- the student's own extra cells kept, after the release cell they followed (but never before the
  grading helpers' cell);
- everything else (instructions, test cells, metadata, tags) exactly as released.

A student cell matches a release cell by nbgrader grade_id, then by cell id, then by content: an
exercise cell by the function or class it defines, any other cell by its text. When an exercise cell
appears twice, the last copy is the answer (it is the one Python would keep); earlier copies stay as
extra cells. Every change is reported in plain words.
"""

import copy
import difflib
import re

import nbformat

from . import answers

HELPERS = "grading_helpers"  # the locked cell that defines the checks' helpers
DEFINES = re.compile(r"^(?:@[^\n]*\n)*(?:def|class)\s+(\w+)", re.M)


def _cell_id(cell) -> str | None:
    return cell.get("id") or cell.get("metadata", {}).get("id")  # Colab keeps ids in the metadata of old notebooks


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


class _Release:
    """Lookup tables over the release notebook's cells."""

    def __init__(self, nb: nbformat.NotebookNode):
        self.cells = nb.cells
        self.exercises = set(answers.exercise_ids(nb))
        self.by_grade_id = {_grade_id(c): i for i, c in enumerate(nb.cells) if _grade_id(c)}
        self.by_id = {c.id: i for i, c in enumerate(nb.cells)}

    def is_exercise(self, index: int) -> bool:
        return _grade_id(self.cells[index]) in self.exercises

    def match(self, cell) -> tuple[int | None, str]:
        """The index of the release cell that `cell` stands for, and how it was matched."""
        grade_id = _grade_id(cell)
        if grade_id in self.by_grade_id and self.cells[self.by_grade_id[grade_id]].cell_type == cell.cell_type:
            return self.by_grade_id[grade_id], "grade_id"
        cell_id = _cell_id(cell)
        if cell_id in self.by_id and self.cells[self.by_id[cell_id]].cell_type == cell.cell_type and not grade_id:
            index = self.by_id[cell_id]
            # an id copied along with a duplicated cell must still look like its cell
            if self.is_exercise(index) or self._similar(cell, self.cells[index]):
                return index, "id"
        if cell.cell_type == "code":
            defined = DEFINES.findall(cell.source)
            exercise = next((name for name in defined if name in self.exercises), None)
            if exercise:
                return self.by_grade_id[exercise], "content"
        for index, candidate in enumerate(self.cells):
            if candidate.cell_type == cell.cell_type and not self.is_exercise(index) and self._similar(cell, candidate):
                return index, "content"
        return None, ""

    @staticmethod
    def _similar(a, b) -> bool:
        if a.source.strip() == b.source.strip():
            return True
        if len(b.source) <= 40:
            return False
        matcher = difflib.SequenceMatcher(None, a.source, b.source, autojunk=False)
        return matcher.quick_ratio() > 0.9 and matcher.ratio() > 0.9


def _extra(cell) -> nbformat.NotebookNode:
    """A student's own cell, as it will run: source kept, no nbgrader metadata, no tags, no outputs."""
    if cell.cell_type == "code":
        return nbformat.v4.new_code_cell(cell.source)
    if cell.cell_type == "markdown":
        return nbformat.v4.new_markdown_cell(cell.source)
    return nbformat.v4.new_raw_cell(cell.source)


def repair(student: nbformat.NotebookNode, release_nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook to grade, and what had to be repaired (empty when the hand-in was intact)."""
    release = _Release(release_nb)
    answer_of: dict[int, int] = {}            # release index -> student cell index
    extras: dict[int, list[int]] = {}          # release index (-1: before the first) -> extra student cells
    matched_by: dict[int, str] = {}
    duplicates, order, after = [], [], -1
    for j, cell in enumerate(student.cells):
        index, how = release.match(cell)
        if index is None:
            extras.setdefault(after, []).append(j)
            continue
        if index in answer_of:
            if _grade_id(release.cells[index]):
                duplicates.append(_grade_id(release.cells[index]))
            if release.is_exercise(index):  # the later copy is the answer; the earlier one stays as code
                extras.setdefault(after, []).append(answer_of[index])
            else:
                continue
        answer_of[index], matched_by[index] = j, how
        order.append(index)
        after = index

    # The student's cells never run before the grading helpers: the checks snapshot pristine libraries there.
    helpers = release.by_grade_id.get(HELPERS, -1)
    for index in [i for i in extras if i < helpers]:
        extras.setdefault(helpers, [])[:0] = extras.pop(index)

    repaired = copy.deepcopy(release_nb)
    repaired.cells = []
    for j in extras.get(-1, []):
        repaired.cells.append(_extra(student.cells[j]))
    for index, cell in enumerate(release_nb.cells):
        cell = copy.deepcopy(cell)
        if release.is_exercise(index) and index in answer_of:
            cell.source = student.cells[answer_of[index]].source
        repaired.cells.append(cell)
        for j in sorted(set(extras.get(index, []))):
            repaired.cells.append(_extra(student.cells[j]))
    for i, cell in enumerate(repaired.cells):  # ids unique and stable: release ids, then extra-<n>
        if "id" not in cell or any(c is not cell and c.get("id") == cell.id for c in repaired.cells):
            cell.id = f"extra-{i}"

    notes = []
    graded = {i for i, c in enumerate(release_nb.cells) if c.get("metadata", {}).get("nbgrader")}
    lost = sorted(_grade_id(release.cells[i]) for i, how in matched_by.items() if i in graded and how != "grade_id")
    if lost:
        notes.append(f"nbgrader metadata restored on {len(lost)} cells ({', '.join(lost[:4])}{', …' if len(lost) > 4 else ''})")
    missing = [_grade_id(release.cells[i]) for i in sorted(graded - set(answer_of))]
    if missing:
        notes.append(f"deleted cells put back: {', '.join(missing)}")
    if duplicates:
        notes.append(f"duplicated cells: {', '.join(sorted(set(duplicates)))} (an exercise's last copy is graded)")
    if order != sorted(order):
        notes.append("cells put back in the released order")
    edited = sorted(_grade_id(release.cells[i]) for i in answer_of if i in graded and not release.is_exercise(i)
                    and student.cells[answer_of[i]].source != release.cells[i].source)
    if edited:
        notes.append(f"edited locked cells restored: {', '.join(edited)}")
    tagged = sorted({t for c in student.cells for t in c.get("metadata", {}).get("tags", [])})
    if tagged:
        notes.append(f"cell tags ignored: {', '.join(tagged)}")
    return repaired, notes
