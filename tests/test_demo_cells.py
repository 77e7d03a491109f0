"""Cells that only show something (tag `demo`, coursekit/demo_cells.py) are skipped while a hand-in is graded, unless
a cell that runs needs them; points are the same with and without skipping.

The instructor's source notebook alone decides which cells are demo cells (locked, with a grade_id); a demo cell still
runs when a later cell that runs (a student's, a test cell, an untagged cell) reads a name it binds, and then the demo
cells it reads from run too. Dynamic access to names, or a cell that can't be parsed, makes every demo cell before it
run."""

import nbformat
import pytest

from coursekit import answers, demo_cells, grading, kernel_failures, layout, samples
from assignments import PW2, PW3


def code(source, grade_id=None, locked=False, solution=False, points=0, tags=()):
    cell = nbformat.v4.new_code_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade_id": grade_id, "locked": locked, "solution": solution,
                                     "grade": bool(points), "points": points, "schema_version": 3}
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def demo(source, grade_id):
    return code(source, grade_id, locked=True, tags=[demo_cells.DEMO])


# An instructor notebook in small: demo cells that build a tokenizer, train a model on it and show the model; an
# exercise, lm_loss, and its test cell, which builds its own stand-ins.
SOURCE = [
    code("import math", "imports", locked=True),
    demo("tokenizer = make_tokenizer()\nsteps = 3", "demo_tokenizer"),
    demo("model = train(tokenizer, steps)", "demo_training_run"),
    demo("print(model)", "demo_show_model"),
    code("def lm_loss(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION", "lm_loss", solution=True),
    code("assert lm_loss(2) == 2", "test_lm_loss", locked=True, points=5),
]
DEMOS = {1: "demo_tokenizer", 2: "demo_training_run", 3: "demo_show_model"}


def hand_in(lm_loss: str, *extra: str) -> list:
    """The source notebook's cells with the student's `lm_loss`, and `extra` cells of the student's at the end."""
    cells = [nbformat.from_dict(dict(c)) for c in SOURCE]
    cells[4] = code(lm_loss, "lm_loss", solution=True)
    return cells + [code(source) for source in extra]


def skipped(cells) -> set[str]:
    return {answers.grade_id(cells[i]) for i in demo_cells.skipped(cells, SOURCE)}


def test_demo_cells_that_nothing_reads_are_skipped():
    assert skipped(hand_in("def lm_loss(x):\n    return x * 1.0")) == set(DEMOS.values())


def test_a_student_function_reading_a_global_of_a_demo_cell_makes_it_run_with_what_it_reads():
    assert skipped(hand_in("def lm_loss(x):\n    return x + len(tokenizer)")) == {"demo_training_run",
                                                                                   "demo_show_model"}
    # model is trained on tokenizer and steps: both demo cells run, not the one that only shows the model
    assert skipped(hand_in("def lm_loss(x):\n    return model(x)")) == {"demo_show_model"}


def test_a_parameter_or_a_local_variable_of_the_same_name_needs_nothing():
    answer = "def lm_loss(x, tokenizer=None):\n    model = x\n    return [model for steps in range(1)][0]"
    assert skipped(hand_in(answer)) == set(DEMOS.values())


def test_a_name_bound_earlier_in_the_same_cell_is_not_read_from_outside():
    assert skipped(hand_in("def lm_loss(x):\n    return x", "model = 1\nprint(model)")) == set(DEMOS.values())
    assert skipped(hand_in("def lm_loss(x):\n    return x", "print(model)\nmodel = 1")) == {"demo_show_model"}
    assert skipped(hand_in("def lm_loss(x):\n    return x", "if x:\n    model = 1\nprint(model)")) == {"demo_show_model"}


def test_a_student_added_cell_after_the_demos_needs_only_those_before_it_it_reads():
    assert skipped(hand_in("def lm_loss(x):\n    return x", "generated = model.generate(3)")) == {"demo_show_model"}


@pytest.mark.parametrize("dynamic", [
    "return globals()['model'](x)", "return eval('model')(x)", "return vars()[x]", "return get_ipython().user_ns[x]",
    "import sys\n    return sys.modules['__main__'].model(x)", "return __import__('__main__').model(x)",
])
def test_dynamic_access_to_names_makes_every_demo_cell_before_run(dynamic):
    assert skipped(hand_in(f"def lm_loss(x):\n    {dynamic}")) == set()


def test_ipython_magics_are_dynamic_access():
    assert skipped(hand_in("def lm_loss(x):\n    return x", "%time lm_loss(1)")) == set()


def test_a_cell_that_cannot_be_parsed_makes_every_demo_cell_before_run():
    assert skipped(hand_in("def lm_loss(x) return x")) == set()


def test_a_hand_ins_own_demo_tag_makes_nothing_skip():
    cells = hand_in("def lm_loss(x):\n    return model(x)")
    cells[4].metadata["tags"] = [demo_cells.DEMO]
    cells[4].metadata["nbgrader"]["locked"] = True
    cells[0].metadata["tags"] = [demo_cells.DEMO]
    assert skipped(cells) == {"demo_show_model"}


def test_what_a_hand_in_writes_in_a_locked_cell_does_not_count_the_instructors_source_runs():
    cells = hand_in("def lm_loss(x):\n    return x")
    cells[5].source = "print(model)"  # nbgrader restores the test cell's source before it runs
    cells[3].source = "globals()"
    assert skipped(cells) == set(DEMOS.values())


@pytest.mark.parametrize("cell, problem", [
    (code("x = 1", tags=[demo_cells.DEMO]), "no nbgrader grade_id"),
    (code("x = 1", "demo_x", tags=[demo_cells.DEMO]), "not locked"),
    (code("x = 1", "x", locked=True, solution=True, tags=[demo_cells.DEMO]), "a solution cell"),
    (code("x = 1", "test_x", locked=True, points=1, tags=[demo_cells.DEMO]), "a graded (test) cell"),
    (code("x = 1", "demo_x", locked=True, tags=[demo_cells.DEMO, "grader-only"]), "a grader-only cell"),
])
def test_a_tag_on_a_cell_that_is_not_a_locked_instructor_cell_is_ignored(cell, problem):
    assert problem in demo_cells.problems(cell)
    assert demo_cells.skipped([cell, code("y = 2")], [cell]) == set()


def test_a_fresh_kernel_after_a_crash_does_not_replay_the_skipped_cells():
    cells = hand_in("def lm_loss(x):\n    return x")
    failures = kernel_failures.KernelFailures.of(cells, lambda c: answers.grade_id(c) == "test_lm_loss")
    failures.not_run = demo_cells.skipped(cells, SOURCE)
    assert failures.replay(5, cells, lambda c: answers.grade_id(c) == "test_lm_loss") == [0, 4]


# The course's own notebooks

@pytest.mark.parametrize("assignment", [PW2, PW3], ids=lambda a: a.name)
def test_every_demo_cell_of_the_course_is_a_locked_instructor_cell_that_grading_never_needs(assignment):
    source = nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)
    tagged = [c for c in source.cells if demo_cells.DEMO in demo_cells.tags(c)]
    assert tagged, "each assignment has demo cells"
    for cell in tagged:
        assert demo_cells.problems(cell) == [], (answers.grade_id(cell), demo_cells.problems(cell))
    release = nbformat.read(layout.COURSE.release_notebook(assignment), as_version=4)
    solution = answers.fill(release, answers.solution_answers(source))
    in_solution = {answers.grade_id(c) for c in solution.cells} & demo_cells.demo_ids(source.cells)
    assert in_solution == demo_cells.demo_ids(source.cells), "the release keeps every demo cell, with its grade_id"
    skipped_ids = {answers.grade_id(solution.cells[i]) for i in demo_cells.skipped(solution.cells, source.cells)}
    assert skipped_ids == in_solution, "no cell that runs while the solution is graded reads a name of a demo cell"


def test_pw2s_training_run_and_generation_demos_are_demo_cells():
    source = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    assert {"demo_training_run", "demo_generation_checkpoint", "demo_bonus_bert"} <= demo_cells.demo_ids(source.cells)


# Grading, end to end: the solution, the demo's "mistakes" and a decode that reads the trained model, with demo cells
# skipped; the solution and the mistakes again with every cell run.

DECODE_READS_THE_TRAINED_MODEL = "transformer.eval()  # reads the notebook's trained model, a global of a demo cell\n"


def graded_course(folder, handins: dict, skip: bool):
    course = layout.copy_course(folder)
    if not skip:
        with open(course.root / "nbgrader_config.py", "a") as config:
            config.write("\nc.GradedExecute.skip_demo_cells = False\n")
    grading.release(course, PW2)
    for student, nb in handins.items():
        target = layout.submission_dir(course.submitted, student, PW2)
        target.mkdir(parents=True)
        nbformat.write(nb, target / PW2.notebook)
    return course, {r.student: r for r in grading.grade(course, PW2, jobs=2)}


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory):
    source = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    release = nbformat.read(layout.COURSE.release_notebook(PW2), as_version=4)
    solution = answers.solution_answers(source)
    decode = solution["decode"].replace("    model.eval()", "    " + DECODE_READS_THE_TRAINED_MODEL + "    model.eval()", 1)
    assert DECODE_READS_THE_TRAINED_MODEL in decode
    handins = {"solution": answers.fill(release, solution),
               "mistakes": answers.fill(release, {**solution, **samples.mistakes(PW2)})}
    skipping = graded_course(tmp_path_factory.mktemp("skipping") / "course",
                             {**handins, "decode-reads-transformer": answers.fill(release, {**solution, "decode": decode})},
                             skip=True)
    running = graded_course(tmp_path_factory.mktemp("running") / "course", handins, skip=False)
    return skipping, running


def autograded(course, student) -> dict:
    nb = nbformat.read(layout.submission_dir(course.autograded, student, PW2) / PW2.notebook, as_version=4)
    return {answers.grade_id(c): c for c in nb.cells if answers.grade_id(c)}


def test_the_solution_gets_full_marks_with_its_demo_cells_skipped(both_ways):
    (course, results), _ = both_ways
    assert results["solution"].status == "graded" and results["solution"].score == 100
    cells = autograded(course, "solution")
    source = nbformat.read(course.source_notebook(PW2), as_version=4)
    for grade_id in demo_cells.demo_ids(source.cells):
        assert cells[grade_id].outputs == [] and cells[grade_id].execution_count is None, grade_id
    assert {"load_data", "load_tokenizer"} <= demo_cells.demo_ids(source.cells), "no check needs the data or the tokenizer"
    grading.feedback(course, PW2)
    page = (course.root / "feedback" / "solution" / PW2.name / f"{PW2.notebook.removesuffix('.ipynb')}.html")
    assert page.is_file() and "decode" in page.read_text()


def test_an_answer_that_reads_a_global_of_a_demo_cell_gets_full_marks_because_that_cell_ran(both_ways):
    (course, results), _ = both_ways
    assert results["decode-reads-transformer"].score == 100, results["decode-reads-transformer"]
    cells = autograded(course, "decode-reads-transformer")
    training = "".join(o.get("text", "") for o in cells["demo_training_run"].outputs)
    assert "step 30: train loss" in training, "the training run binds transformer: it ran, with what it needs"
    assert cells["demo_bonus_bert"].outputs == [], "the demos that nothing reads are still skipped"


def test_points_are_the_same_with_and_without_skipping(both_ways):
    (_, skipping), (course, running) = both_ways
    for student in ("solution", "mistakes"):
        assert skipping[student].status == running[student].status == "graded"
        assert skipping[student].exercises == running[student].exercises, student
    assert running["mistakes"].score < 100
    training = "".join(o.get("text", "") for o in autograded(course, "solution")["demo_training_run"].outputs)
    assert "step 30: train loss" in training, "with skip_demo_cells = False, every cell runs"
