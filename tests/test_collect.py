"""An LMS download (a Moodle zip, one folder per student) lands in submitted/<student>/ with normalised names."""

import zipfile

from coursekit import collect, grading, layout


def test_names_become_folder_safe_ids():
    assert collect.student_id("Élodie N'Diaye") == "elodie-n-diaye"
    assert collect.student_id("Ada Lovelace") == "ada-lovelace"


def test_copies_of_the_notebook_get_the_released_name():
    for name in ["Copy of pw2_transformers.ipynb", "Copy_of_pw2_transformers.ipynb", "pw2_transformers (1).ipynb",
                 "pw2_transformers.ipynb"]:
        assert collect.notebook_name(name) == layout.NOTEBOOK, name
    assert collect.notebook_name("my_homework.ipynb") == "my_homework.ipynb"


def test_a_moodle_zip_is_collected_into_submitted(tmp_path):
    course = layout.copy_course(tmp_path / "course")
    grading.nbgrader(course, "generate_assignment", layout.ASSIGNMENT, "--force")
    archive = course.root / "downloaded" / layout.ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "moodle.zip", "w") as z:
        z.writestr("Ada Lovelace_1001_assignsubmission_file_/Copy of pw2_transformers.ipynb", "{}")
        z.writestr("Élodie N'Diaye_1002_assignsubmission_file_/pw2_transformers (1).ipynb", "{}")
        z.writestr("Alan Turing_1003_assignsubmission_file_/homework.ipynb", "{}")
        z.writestr("stray.ipynb", "{}")
    grading.nbgrader(course, "zip_collect", layout.ASSIGNMENT)
    found = sorted(str(p.relative_to(course.submitted)) for p in course.submitted.rglob("*.ipynb"))
    assert found == ["ada-lovelace/pw2_transformers/pw2_transformers.ipynb",
                     "alan-turing/pw2_transformers/homework.ipynb",
                     "elodie-n-diaye/pw2_transformers/pw2_transformers.ipynb"]
