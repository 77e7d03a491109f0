"""Tooling for the auto-graded Transformers course: build the notebook, make sample submissions, grade them.

One module per concern:
- `layout`: where everything lives in the course directory.
- `notebook_text`: the instructor notebook <-> its percent-format text twin.
- `colab`: the "Open in Colab" badge in the notebook's header, and the repository it points to.
- `answers`: solution code out of the instructor notebook, and answers into a release notebook.
- `samples`: demo submissions (correct, untouched, typical mistakes, damaged files).
- `collect`: the nbgrader zip_collect plugin for Moodle downloads.
- `intake`: checks every hand-in under submitted/ and stages the gradable ones, never touching submitted/.
- `repair`: rebuilds a damaged hand-in on the release notebook (metadata, duplicates, deleted cells...).
- `sandbox`: the bubblewrap sandbox that the grading kernel runs in.
- `limit_output`: an nbgrader preprocessor that caps the size of outputs.
- `grading`: runs nbgrader autograde on the staged submissions and reports the scores.
- `checks`: reads the check lines (✓/✗ and reasons) that test cells print, from an autograded notebook.
- `catalogue`: grades the catalogue of known right and wrong answers (tests/catalogue.py) and tabulates it.
- `benchmark`: times the autograding of one submission.
- `cli`: the `python -m coursekit` commands behind the Makefile.
"""
