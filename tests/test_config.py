"""A broken nbgrader_config.py stops every command with the reason, instead of nbgrader's silent fallback to its
defaults (which would grade without the sandbox's settings and write feedback with the hidden tests)."""

import pytest

from coursekit import autograde, grading, layout
from assignments import PW2


@pytest.fixture
def broken_course(tmp_path) -> layout.Course:
    course = layout.copy_course(tmp_path / "course")
    config = course.root / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Execute.timeout = sixty\n")
    return course


def test_the_course_configuration_loads():
    config = autograde.load_config(layout.ROOT)
    assert config.CourseDirectory.course_id == "transformers"
    assert config.Execute.timeout == 60


def test_nbgrader_commands_refuse_to_run_with_a_broken_configuration(broken_course):
    with pytest.raises(grading.ConfigError, match="NameError: name 'sixty' is not defined"):
        grading.nbgrader(broken_course, "generate_assignment", PW2.name, "--force")
    assert not broken_course.gradebook.exists(), "nbgrader ran"


def test_grading_refuses_to_run_with_a_broken_configuration(broken_course):
    with pytest.raises(grading.ConfigError, match="nothing was run"):
        autograde.autograde(broken_course, PW2)
