"""The assignments the tests grade, this repository's two practical works, and what their notebooks declare.

The exercises of an assignment are read from its instructor notebook (its solution cells, in order), never
listed again here.
"""

import functools

import nbformat

from coursekit import answers, layout

PW2 = layout.Assignment("pw2_transformers")
PW3 = layout.Assignment("pw3_decoding")


@functools.cache
def exercises(assignment: layout.Assignment) -> tuple[str, ...]:
    """The assignment's exercises (grade_ids of its solution cells), in notebook order."""
    return tuple(answers.exercise_ids(nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)))


@functools.cache
def max_points(assignment: layout.Assignment) -> float:
    """The assignment's total: the points of its test cells."""
    return sum(answers.test_points(nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)).values())
