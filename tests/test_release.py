"""The student version in release/ gives nothing away: no solution, no hidden test, no instructor output."""

import re

from coursekit import answers, layout


def _code_lines(text: str) -> set[str]:
    """The meaningful lines of some code: stripped, not blank, not comments, longer than a trivial `return x`."""
    return {line.strip() for line in text.splitlines()
            if len(line.strip()) > 20 and not line.strip().startswith("#")}


HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def _inside(nb, region: re.Pattern) -> str:
    """The code inside every region of the instructor notebook."""
    return "\n".join(m.group(1) for cell in nb.cells for m in region.finditer(cell.source))


def _public_text(nb) -> str:
    """The instructor notebook without its hidden tests and solutions: what students may see."""
    return "\n".join(SOLUTION.sub("", HIDDEN.sub("", cell.source)) for cell in nb.cells)


def _release_text(release_nb) -> str:
    return "\n".join(cell.source for cell in release_nb.cells)


def test_release_has_no_solution_code(source_nb, release_nb):
    solution_lines = _code_lines(_inside(source_nb, SOLUTION)) - _code_lines(_public_text(source_nb))
    assert solution_lines, "the instructor notebook should have solution regions"
    leaked = solution_lines & _code_lines(_release_text(release_nb))
    assert not leaked, f"solution lines found in the release: {sorted(leaked)[:5]}"
    assert "BEGIN SOLUTION" not in _release_text(release_nb)


def test_every_exercise_cell_is_a_stub_in_the_release(source_nb, release_nb):
    assert answers.exercise_ids(release_nb) == answers.exercise_ids(source_nb)
    for cell in release_nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            assert "raise NotImplementedError()" in cell.source, cell.metadata["nbgrader"]["grade_id"]


def test_release_has_no_hidden_test_code(source_nb, release_nb):
    # lines that also stand in public code (a signature like `def forward(self, x):`) give nothing away
    hidden_lines = _code_lines(_inside(source_nb, HIDDEN)) - _code_lines(_public_text(source_nb))
    assert len(hidden_lines) > 100, "the instructor notebook should have hidden tests"
    leaked = hidden_lines & _code_lines(_release_text(release_nb))
    assert not leaked, f"hidden-test lines found in the release: {sorted(leaked)[:5]}"
    assert "HIDDEN TESTS" not in _release_text(release_nb)


def test_release_has_no_outputs(release_nb):
    for cell in release_nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.get("id")


def test_release_folder_holds_only_the_notebook_and_its_data():
    files = {str(p.relative_to(layout.ROOT / "release")) for p in (layout.ROOT / "release").rglob("*") if p.is_file()}
    assert files == {"pw2_transformers/pw2_transformers.ipynb", "pw2_transformers/data/wikitext_sample.json",
                     "pw2_transformers/data/README.md", "pw3_decoding/pw3_decoding.ipynb"}


def test_every_test_cell_is_locked_and_carries_points(source_nb):
    tests = answers.test_points(source_nb)
    assert sum(tests.values()) == 100
    assert [answers.exercise_of(t) for t in tests] == answers.exercise_ids(source_nb), (
        "each exercise cell <name> is followed by one test cell test_<name>")
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            assert meta.get("locked"), meta["grade_id"]


def test_the_notebook_states_the_points_of_every_exercise(source_nb):
    header = source_nb.cells[0].source
    assert "100 points" in header
    for test_id, points in answers.test_points(source_nb).items():
        assert f"| `{answers.exercise_of(test_id)}` | {points:g} |" in header
