"""The `python -m coursekit` commands that the Makefile runs."""

import argparse
import sys
from pathlib import Path

import nbformat
from sqlalchemy.engine import make_url

from . import colab, grading, layout, notebook_text, samples
from .layout import COURSE


def cmd_notebook(args) -> int:
    """source_text/pw2_transformers.py -> source/pw2_transformers/pw2_transformers.ipynb, with the Colab badge
    of coursekit/colab.py in the header and the checks engine of coursekit/notebook_checks.py in the helpers
    cell (both written back into the text twin when they changed)."""
    nb = notebook_text.notebook_from_text(layout.SOURCE_TEXT)
    nb.cells[0].source = colab.with_badge(nb.cells[0].source)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "grading_helpers":
            cell.source = notebook_text.embed_checks_engine(cell.source)
    notebook_text.write_notebook(nb, COURSE.source_notebook)
    print(f"wrote {COURSE.source_notebook.relative_to(COURSE.root)}")
    text = notebook_text.text_from_notebook(nb)
    if text != layout.SOURCE_TEXT.read_text(encoding="utf-8"):
        layout.SOURCE_TEXT.write_text(text, encoding="utf-8")
        print(f"wrote {layout.SOURCE_TEXT.relative_to(layout.ROOT)} (Colab badge: {colab.release_url()}, checks engine)")
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
    from . import autograde

    if args.no_sandbox:
        print("\n" + "!" * 100 + "\nWARNING: grading WITHOUT the sandbox: student code runs with your permissions, "
              "your network and your files.\n" + "!" * 100 + "\n", file=sys.stderr)
    try:
        results = grading.grade(COURSE, sandboxed=not args.no_sandbox, jobs=args.jobs)
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
    url = grading.db_url(COURSE)  # with GRADEBOOK_URL set: the database, never its password
    where = COURSE.gradebook.name if url == f"sqlite:///{COURSE.gradebook}" else make_url(url).render_as_string(True)
    print(f"Reports: {report.relative_to(COURSE.root)}, {summary.relative_to(COURSE.root)}. Grades are in {where}.")
    failed = [r for r in results if r.status == "failed"]
    if failed:  # the student's code is not to blame for these (grading.Result): the batch did not go through
        print(f"\nERROR: {len(failed)} hand-in{'s' * (len(failed) > 1)} could not be graded for reasons other than "
              "the student's code: " + ", ".join(f"{r.student} ({r.note or 'failed'})" for r in failed)
              + f". nbgrader's log: {autograde.log_path(COURSE).relative_to(COURSE.root)}", file=sys.stderr)
        return 3
    return 0


def cmd_export(args) -> int:
    from . import export

    found = export.rows(COURSE)
    if not found:
        print("No students in the gradebook yet: run `make grade` first.")
        return 1
    print(f"wrote {export.write_grades(COURSE, found).relative_to(COURSE.root)}: {len(found)} students, "
          f"{sum(r.status == 'graded' for r in found)} graded")
    if args.moodle_worksheet:
        try:
            path, problems = export.fill_moodle_worksheet(COURSE, found, Path(args.moodle_worksheet))
        except export.WorksheetError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return 2
        print(f"wrote {path.relative_to(COURSE.root)}: upload it to the Moodle assignment (Grading action > "
              "Upload grading worksheet)")
        for problem in problems:
            print(f"  - {problem}")
    return 0


def cmd_participants(args) -> int:
    from . import collect

    found = collect.record_participants(COURSE, grading.db_url(COURSE))
    print(f"recorded the name and Moodle participant id of {len(found)} students in the gradebook")
    return 0


def cmd_scores(args) -> int:
    report = COURSE.reports / "grading.csv"
    if not report.is_file():
        print("No grading report yet: run `make grade` first.")
        return 1
    print(grading.table(grading.read_report(report)))
    return 0


def cmd_report(args) -> int:
    from . import report  # imports matplotlib: only when asked

    try:
        paths = report.write(COURSE)
    except report.NothingGraded as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    print("CSV files: " + ", ".join(str(p.relative_to(COURSE.root)) for p in paths[:-1]))
    print(f"Class report: {paths[-1]}")
    return 0


def cmd_bench_notebook(args) -> int:
    from . import benchmark  # imports nbclient: only when asked

    print(benchmark.run())
    return 0


def cmd_bench_grading(args) -> int:
    from . import benchmark

    result = benchmark.grading_throughput(args.submissions, args.jobs)
    print(benchmark.grading_report(result))
    path = benchmark.write_grading_json(result, COURSE.reports / "bench_grading.json")
    print(f"wrote {path.relative_to(COURSE.root)}")
    return 0


def cmd_bench_training(args) -> int:
    from . import bench_training  # imports transformers: only when asked

    bench_training.main(args.device, args.steps, args.warmup, args.overfit_steps, args.overfit_seconds, args.out)
    return 0


def cmd_catalogue(args) -> int:
    from . import catalogue

    entries = catalogue.load()
    students = [s for s in catalogue.submissions(entries) if any(part in s for part in args.only)] if args.only else None
    print(catalogue.table(catalogue.grade(entries, students)))
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number, 1 or more, got {text!r}")
    return int(text)


def cmd_nbgrader(arguments: list[str]) -> int:
    return grading.nbgrader(COURSE, *arguments, check=False).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="autograde every submission in submitted/ and write reports/grading.csv")
    grade.add_argument("--no-sandbox", action="store_true", help="run student code without the sandbox (not recommended)")
    grade.add_argument("--jobs", type=_positive, default=None, metavar="N",
                       help="hand-ins graded at a time (default: one per core)")
    grade.set_defaults(run=cmd_grade)
    export = commands.add_parser("export", help="grades for the LMS: reports/grades.csv (and a Moodle grading worksheet)")
    export.add_argument("--moodle-worksheet", metavar="FILE", help="the grading worksheet downloaded from Moodle, to fill in")
    export.set_defaults(run=cmd_export)
    bench = commands.add_parser("bench-grading", help="grading throughput, one worker against one per core")
    bench.add_argument("--submissions", type=_positive, default=20, metavar="N", help="hand-ins in the batch (default 20)")
    bench.add_argument("--jobs", type=_positive, default=None, metavar="N", help="parallel workers (default: one per core)")
    bench.set_defaults(run=cmd_bench_grading)
    training = commands.add_parser("bench-training", help="training throughput (tokens/s) of the reference solution, "
                                "with SDPA and with the seed's per-step tokenization, and the time to overfit one batch")
    training.add_argument("--device", default="cpu", help="cpu (default) or cuda (fp16 autocast)")
    training.add_argument("--steps", type=int, help="timed training steps per variant (default: 3 on CPU, 100 on GPU)")
    training.add_argument("--warmup", type=int, help="untimed steps first (default: 1 on CPU, 10 on GPU)")
    training.add_argument("--overfit-steps", type=int, help="give up overfitting after this many steps (default 5000)")
    training.add_argument("--overfit-seconds", type=float,
                          help="... or after this many seconds (default: 120 on CPU, 1200 on GPU)")
    training.add_argument("--out", type=Path, help="the JSON report (default: reports/bench_training_<device>.json)")
    training.set_defaults(run=cmd_bench_training)
    catalogue = commands.add_parser("catalogue", help="grade the catalogue of known right and wrong answers "
                                    "(tests/catalogue.py): what the public checks flag, what grading takes away")
    catalogue.add_argument("--only", nargs="+", metavar="TEXT",
                           help="only the submissions whose id contains one of these (e.g. wrong-decode correct-)")
    catalogue.set_defaults(run=cmd_catalogue)
    for name, function, help in [
        ("notebook", cmd_notebook, "rebuild the instructor notebook from its text twin in source_text/"),
        ("notebook-text", cmd_notebook_text, "rewrite the text twin in source_text/ from the instructor notebook"),
        ("samples", cmd_samples, "write demo submissions into submitted/demo-*/"),
        ("participants", cmd_participants, "record the names and Moodle participant ids of a collected zip"),
        ("scores", cmd_scores, "print the table of scores from reports/grading.csv"),
        ("report", cmd_report, "the class report for TAs: reports/class_report.html and CSV files in reports/"),
        ("bench-notebook", cmd_bench_notebook, "time the autograding of one submission, and its slowest cells"),
    ]:
        commands.add_parser(name, help=help).set_defaults(run=function)
    commands.add_parser("nbgrader", help="run nbgrader with the arguments that follow, once nbgrader_config.py "
                        "is known to load (the Makefile runs nbgrader this way)")
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["nbgrader"]:  # every argument after it is nbgrader's
            return cmd_nbgrader(argv[1:])
        args = parser.parse_args(argv)
        return args.run(args)
    except grading.ConfigError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
