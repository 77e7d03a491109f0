"""Tooling for an auto-graded nbgrader course of several practical works: build the notebooks, grade, report.

The kit holds no assignment's content: each assignment's material (its notebook's text twin, its catalogue of
answers, its benchmark) is in source_text/<assignment>/, found by convention (`material`).

One module per concern:
- `layout`: where everything lives in the course directory; an assignment (`Assignment`) and its files.
- `material`: an assignment's own files in source_text/<assignment>/, loaded by convention.
- `notebook_text`: the instructor notebook <-> its percent-format text twin; the checks engine into its helpers cell.
- `notebook_checks`: the checks engine the notebook carries (probe, verdict; local, probe and record modes) and
  the plain data that crosses the kernel's boundary.
- `colab`: the "Open in Colab" badge in the notebook's header, and the repository it points to.
- `answers`: solution code out of the instructor notebook, and answers into a release notebook.
- `samples`: demo submissions (correct, untouched, typical mistakes, damaged files).
- `collect`: the nbgrader zip_collect plugin for Moodle downloads.
- `intake`: checks every hand-in under submitted/ and stages the gradable ones, never touching submitted/.
- `repair`: rebuilds a damaged hand-in on the release notebook (metadata, duplicates, deleted cells...).
- `sandbox`: the bubblewrap sandbox that the grading kernel runs in.
- `scoring`: nbgrader's Execute with every test cell's points computed outside the kernel, from its probes' data.
- `sanitize`: makes an autograded notebook's outputs and student Markdown safe to render (no scripts, no loads).
- `limit_output`: caps the size of outputs, while the notebook runs and after.
- `workers`: a process pool that replaces a dead worker and retries its hand-in once.
- `spreadsheet`: neutralises CSV cells that a spreadsheet would read as formulas.
- `autograde`: nbgrader's autograde over the staged hand-ins, N workers at a time, in the sandbox.
- `incremental`: what was graded with which tests, so that grading grades only what changed, and resumes.
- `regrade`: the audit of a re-grading after the tests changed: whose points moved, losses first.
- `cluster`: grading on a Dask cluster, one hand-in per task, with a version check of each worker's course.
- `grading`: the stages of grading an assignment, in one place: release, intake -> autograde -> results, feedback.
- `results`: every student's result per assignment, scored by the gradebook (manual grades, late penalty); grading.csv.
- `export`: grades.csv for the LMS, every assignment; Moodle's grading worksheet.
- `report`: the class report for TAs, per assignment.
- `feedback`: the score summary at the top of a student's feedback page.
- `checks`: reads the check lines (✓/✗ and reasons) that test cells print, from an autograded notebook.
- `catalogue`: grades an assignment's catalogue of known right and wrong answers and tabulates it.
- `benchmark`: times the autograding of one submission.
- `cli`: the `python -m coursekit` commands behind the Makefile.
"""
