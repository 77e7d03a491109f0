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

Matching takes bounded time whatever the hand-in. Exact matches (grade_id, cell id, definition, identical
text) are looked up in tables; only the rest is compared with difflib, and only with release cells of a
comparable length, never for a cell longer than FUZZY_MAX_CHARS, and within a work budget of FUZZY_BUDGET
per hand-in. When the budget runs out, the remaining cells are matched by the exact lookups only, and the
notes say so. Exercises never depend on difflib (they are found by grade_id, id or definition), so the
budget can cost a student nothing but the place of an edited instruction or test cell, which is then kept
as one of the student's own cells while the release's copy is restored.
"""

import copy
import difflib
import re
from collections import Counter

import nbformat

from . import answers

HELPERS = "grading_helpers"  # the locked cell that defines the checks' helpers
DEFINES = re.compile(r"^(?:def|class)\s+(\w+)", re.M)  # top-level definitions (decorated or not); linear time

SIMILAR = 0.9                  # difflib ratio above which two cells are the same cell, edited
FUZZY_MAX_CHARS = 100_000      # a cell longer than this is never compared with difflib (the release's longest: 8 kB)
# difflib's work allowed on one hand-in, counted as len(a) * len(b) per full comparison (its worst case) and
# len(a) + len(b) per quick one: at most about 5 s on one core here. Measured: a Colab save spends 582, a hand-in
# that lost its metadata and has every release cell over 100 characters edited 1.2e8 (1 s).
FUZZY_BUDGET = 200_000_000


def _cell_id(cell) -> str | None:
    return cell.get("id") or cell.get("metadata", {}).get("id")  # Colab keeps ids in the metadata of old notebooks


class _Release:
    """Lookup tables over the release notebook's cells, and the difflib budget of one hand-in's matching."""

    def __init__(self, nb: nbformat.NotebookNode):
        self.cells = nb.cells
        self.exercises = set(answers.exercise_ids(nb))
        self.by_grade_id = {answers.grade_id(c): i for i, c in enumerate(nb.cells) if answers.grade_id(c)}
        self.by_id = {c.id: i for i, c in enumerate(nb.cells)}
        self.by_text: dict[tuple[str, str], int] = {}  # (cell type, stripped text) -> first non-exercise cell
        for i, c in enumerate(nb.cells):
            if not self.is_exercise(i):
                self.by_text.setdefault((c.cell_type, c.source.strip()), i)
        self.matchers: dict[int, difflib.SequenceMatcher] = {}
        self.budget = FUZZY_BUDGET
        self.unmatched_for_budget = 0  # cells found by no lookup once the budget had run out
        self.too_long = 0              # cells too long to compare with difflib

    def is_exercise(self, index: int) -> bool:
        return answers.grade_id(self.cells[index]) in self.exercises

    def match(self, cell) -> tuple[int | None, str]:
        """The index of the release cell that `cell` stands for, and how it was matched."""
        grade_id = answers.grade_id(cell)
        if grade_id in self.by_grade_id and self.cells[self.by_grade_id[grade_id]].cell_type == cell.cell_type:
            return self.by_grade_id[grade_id], "grade_id"
        cell_id = _cell_id(cell)
        if cell_id in self.by_id and self.cells[self.by_id[cell_id]].cell_type == cell.cell_type and not grade_id:
            index = self.by_id[cell_id]
            # an id copied along with a duplicated cell must still look like its cell
            if self.is_exercise(index) or self._similar(cell, index):
                return index, "id"
        if cell.cell_type == "code":
            defined = DEFINES.findall(cell.source)
            exercise = next((name for name in defined if name in self.exercises), None)
            if exercise:
                return self.by_grade_id[exercise], "content"
        index = self.by_text.get((cell.cell_type, cell.source.strip()))
        if index is not None:
            return index, "content"
        if len(cell.source) > FUZZY_MAX_CHARS:
            self.too_long += 1
            return None, ""
        for index, candidate in enumerate(self.cells):
            if candidate.cell_type == cell.cell_type and not self.is_exercise(index) and self._similar(cell, index):
                return index, "content"
        self.unmatched_for_budget += self.budget <= 0
        return None, ""

    def _similar(self, cell, index: int) -> bool:
        """Whether `cell` is release cell `index`, edited: the same text, or a difflib ratio above SIMILAR,
        compared only while the budget lasts."""
        a, b = cell.source, self.cells[index].source
        if a.strip() == b.strip():
            return True
        if len(b) <= 40 or len(a) > FUZZY_MAX_CHARS or self.budget <= 0:
            return False
        if index not in self.matchers:  # one per release cell: difflib caches what it learns of b
            self.matchers[index] = difflib.SequenceMatcher(None, b=b, autojunk=False)
        matcher = self.matchers[index]
        matcher.set_seq1(a)
        if matcher.real_quick_ratio() <= SIMILAR:  # from the lengths alone
            return False
        if not self._spend(len(a) + len(b)) or matcher.quick_ratio() <= SIMILAR:
            return False
        return self._spend(len(a) * len(b)) and matcher.ratio() > SIMILAR

    def _spend(self, work: int) -> bool:
        """Takes `work` from the budget; False, and the budget is spent, when there isn't that much left."""
        if work > self.budget:
            self.budget = 0
            return False
        self.budget -= work
        return True


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
            if answers.grade_id(release.cells[index]):
                duplicates.append(answers.grade_id(release.cells[index]))
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
    ids = Counter(c.get("id") for c in repaired.cells)
    for i, cell in enumerate(repaired.cells):  # ids unique and stable: release ids, then extra-<n>
        if "id" not in cell or ids[cell.id] > 1:
            ids[cell.get("id")] -= 1
            cell.id = f"extra-{i}"
            ids[cell.id] += 1

    notes = []
    graded = {i for i, c in enumerate(release_nb.cells) if c.get("metadata", {}).get("nbgrader")}
    lost = sorted(answers.grade_id(release.cells[i]) for i, how in matched_by.items() if i in graded and how != "grade_id")
    if lost:
        notes.append(f"nbgrader metadata restored on {len(lost)} cells ({', '.join(lost[:4])}{', …' if len(lost) > 4 else ''})")
    missing = [answers.grade_id(release.cells[i]) for i in sorted(graded - set(answer_of))]
    if missing:
        notes.append(f"deleted cells put back: {', '.join(missing)}")
    if duplicates:
        notes.append(f"duplicated cells: {', '.join(sorted(set(duplicates)))} (an exercise's last copy is graded)")
    if order != sorted(order):
        notes.append("cells put back in the released order")
    edited = sorted(answers.grade_id(release.cells[i]) for i in answer_of if i in graded and not release.is_exercise(i)
                    and student.cells[answer_of[i]].source != release.cells[i].source)
    if edited:
        notes.append(f"edited locked cells restored: {', '.join(edited)}")
    if release.unmatched_for_budget:
        notes.append(f"content matching reached its work limit: {release.unmatched_for_budget} cells matched by grade_id, "
                     "cell id, definition or identical text only")
    if release.too_long:
        notes.append(f"{release.too_long} cells too long to compare by content (over {FUZZY_MAX_CHARS // 1000} kB): "
                     "matched by grade_id, cell id, definition or identical text only")
    released_tags = {t for c in release_nb.cells for t in c.get("metadata", {}).get("tags", [])}  # e.g. demo
    tagged = sorted({t for c in student.cells for t in c.get("metadata", {}).get("tags", [])} - released_tags)
    if tagged:
        notes.append(f"cell tags ignored: {', '.join(tagged)}")
    return repaired, notes
