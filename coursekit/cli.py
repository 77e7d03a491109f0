"""The `python -m coursekit` commands that the Makefile runs."""

import argparse
import sys

import nbformat

from . import colab, grading, layout, notebook_text, samples
from .layout import COURSE


def cmd_notebook(args) -> int:
    """source_text/pw2_transformers.py -> source/pw2_transformers/pw2_transformers.ipynb, with the Colab badge
    of coursekit/colab.py in the header (written back into the text twin when it changed)."""
    nb = notebook_text.notebook_from_text(layout.SOURCE_TEXT)
    nb.cells[0].source = colab.with_badge(nb.cells[0].source)
    notebook_text.write_notebook(nb, COURSE.source_notebook)
    print(f"wrote {COURSE.source_notebook.relative_to(COURSE.root)}")
    text = notebook_text.text_from_notebook(nb)
    if text != layout.SOURCE_TEXT.read_text(encoding="utf-8"):
        layout.SOURCE_TEXT.write_text(text, encoding="utf-8")
        print(f"wrote {layout.SOURCE_TEXT.relative_to(layout.ROOT)} (Colab badge: {colab.release_url()})")
    return 0


def cmd_notebook_text(args) -> int:
    """source/pw2_transformers/pw2_transformers.ipynb -> source_text/pw2_transformers.py"""
    nb = nbformat.read(COURSE.source_notebook, as_version=4)
    layout.SOURCE_TEXT.write_text(notebook_text.text_from_notebook(nb), encoding="utf-8")
    print(f"wrote {layout.SOURCE_TEXT.relative_to(layout.ROOT)}")
    return 0


def cmd_samples(args) -> int:
    for student in samples.write(COURSE):
        print(f"wrote submitted/{student}/")
    return 0


def cmd_grade(args) -> int:
    if args.no_sandbox:
        print("\n" + "!" * 100 + "\nWARNING: grading WITHOUT the sandbox: student code runs with your permissions, "
              "your network and your files.\n" + "!" * 100 + "\n", file=sys.stderr)
    try:
        results = grading.grade(COURSE, sandboxed=not args.no_sandbox)
    except grading.SandboxUnavailable as error:
        print(f"\nERROR: {error}", file=sys.stderr)
        return 2
    if not results:
        print(f"Nothing to grade: put each hand-in in submitted/<student>/{layout.ASSIGNMENT}/{layout.NOTEBOOK}")
        return 1
    report = grading.write_report(COURSE, results)
    summary = grading.write_summary(COURSE, results, sandboxed=not args.no_sandbox)
    print()
    print(summary.read_text())
    print(f"Reports: {report.relative_to(COURSE.root)}, {summary.relative_to(COURSE.root)}. "
          f"Grades are in {COURSE.gradebook.name}.")
    return 0


def cmd_scores(args) -> int:
    report = COURSE.reports / "grading.csv"
    if not report.is_file():
        print("No grading report yet: run `make grade` first.")
        return 1
    print(grading.table(grading.read_report(report)))
    return 0


def cmd_bench_notebook(args) -> int:
    from . import benchmark  # imports nbclient: only when asked

    print(benchmark.run())
    return 0


def cmd_catalogue(args) -> int:
    from . import catalogue

    print(catalogue.table(catalogue.grade(catalogue.load())))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="autograde every submission in submitted/ and write reports/grading.csv")
    grade.add_argument("--no-sandbox", action="store_true", help="run student code without the sandbox (not recommended)")
    grade.set_defaults(run=cmd_grade)
    for name, function, help in [
        ("notebook", cmd_notebook, "rebuild the instructor notebook from its text twin in source_text/"),
        ("notebook-text", cmd_notebook_text, "rewrite the text twin in source_text/ from the instructor notebook"),
        ("samples", cmd_samples, "write demo submissions into submitted/demo-*/"),
        ("scores", cmd_scores, "print the table of scores from reports/grading.csv"),
        ("catalogue", cmd_catalogue, "grade the catalogue of known right and wrong answers (tests/catalogue.py)"),
        ("bench-notebook", cmd_bench_notebook, "time the autograding of one submission, and its slowest cells"),
    ]:
        commands.add_parser(name, help=help).set_defaults(run=function)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
