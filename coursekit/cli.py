"""The `python -m coursekit` commands that the Makefile runs."""

import argparse
import os
import shutil
import sys
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from sqlalchemy.engine import make_url

from . import colab, deadlines, gradebook_backup, grading, intake, layout, notebook_text, results, samples
from .layout import COURSE


def _chosen(args, available: list[layout.Assignment], what: str) -> list[layout.Assignment]:
    """The assignment named by --assignment, or every one of `available` (those with work for the command)."""
    if args.assignment:
        return [layout.assignment(args.assignment)]
    if not available:
        print(f"Nothing to do: no assignment {what}.")
    return available


def _graded(args) -> list[layout.Assignment]:
    """The assignment named by --assignment, or every graded one; none (said on stderr) before any grading."""
    chosen = [layout.assignment(args.assignment)] if args.assignment else results.graded_assignments(COURSE)
    missing = [a for a in chosen if not results.report_path(COURSE, a).is_file()]
    if not chosen or missing:
        where = ", ".join(str(results.report_path(COURSE, a).relative_to(COURSE.root)) for a in missing) \
            or "reports/<assignment>/grading.csv"
        print(f"ERROR: No grading report yet ({where} missing): run `make grade` first.", file=sys.stderr)
        return []
    return chosen


def cmd_notebook(args) -> int:
    """source_text/<assignment>/notebook.py -> source/<assignment>/<assignment>.ipynb, with the Colab badge of
    coursekit/colab.py in the header and the checks engine of coursekit/notebook_checks.py in the helpers cell
    (both written back into the text twin when they changed)."""
    for assignment in _chosen(args, layout.assignments(), "in source_text/"):
        nb = notebook_text.notebook_from_text(assignment.text_twin)
        nb.cells[0].source = colab.with_badge(nb.cells[0].source, assignment)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "grading_helpers":
                cell.source = notebook_text.embed_checks_engine(cell.source)
        notebook_text.write_notebook(nb, COURSE.source_notebook(assignment))
        print(f"wrote {COURSE.source_notebook(assignment).relative_to(COURSE.root)}")
        text = notebook_text.text_from_notebook(nb)
        if text != assignment.text_twin.read_text(encoding="utf-8"):
            assignment.text_twin.write_text(text, encoding="utf-8")
            print(f"wrote {assignment.text_twin.relative_to(layout.ROOT)} (Colab badge: {colab.release_url(assignment)}, "
                  "checks engine)")
    return 0


def cmd_notebook_text(args) -> int:
    """source/<assignment>/<assignment>.ipynb -> source_text/<assignment>/notebook.py"""
    for assignment in _chosen(args, COURSE.assignments(), "in source/"):
        nb = nbformat.read(COURSE.source_notebook(assignment), as_version=4)
        assignment.text_twin.parent.mkdir(parents=True, exist_ok=True)
        assignment.text_twin.write_text(notebook_text.text_from_notebook(nb), encoding="utf-8")
        print(f"wrote {assignment.text_twin.relative_to(layout.ROOT)}")
    return 0


def cmd_release(args) -> int:
    chosen = _chosen(args, COURSE.assignments(), "in source/")
    badge = colab.target(COURSE.root)
    for assignment in chosen:
        grading.release(COURSE, assignment, badge)
    if chosen:
        print(badge.note)
    return 0


def cmd_solutions(args) -> int:
    for assignment in _chosen(args, COURSE.assignments(), "in source/"):
        grading.nbgrader(COURSE, "generate_solution", assignment.name, "--force")
    return 0


def cmd_samples(args) -> int:
    for assignment in _chosen(args, COURSE.assignments(), "in source/"):
        for student in samples.write(COURSE, assignment):
            print(f"wrote submitted/{student}/{assignment}/")
    return 0


def cmd_grade(args) -> int:
    from . import autograde

    if args.no_sandbox:
        print("\n" + "!" * 100 + "\nWARNING: grading WITHOUT the sandbox: student code runs with your permissions, "
              "your network and your files.\n" + "!" * 100 + "\n", file=sys.stderr)
    chosen = _chosen(args, COURSE.handed_in(), "has hand-ins in submitted/")
    if not chosen:
        names = "|".join(a.name for a in COURSE.assignments()) or "<assignment>"
        print(f"Put each hand-in in submitted/<student>/<assignment>/<assignment>.ipynb (assignments: {names})")
        return 1
    cluster = getattr(args, "cluster", None) or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if cluster is not None:
        from . import cluster as dask_cluster

        try:  # before anything is graded: a cluster needs a gradebook its workers share, at an address that works
            dask_cluster.check_gradebook(results.db_url(COURSE))
            cluster = dask_cluster.check_address(cluster)
        except grading.ClusterRefused as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return 2
    status = 0
    for assignment in chosen:
        try:
            found = grading.grade(COURSE, assignment, sandboxed=not args.no_sandbox, jobs=args.jobs,
                                  force=getattr(args, "force", False), cluster=cluster)
        except grading.SandboxUnavailable as error:
            print(f"\nERROR: {error}", file=sys.stderr)
            return 2
        except deadlines.DeadlineError as error:
            print(f"\nERROR: {assignment}: {error}. Nothing was graded.", file=sys.stderr)
            return 2
        except (grading.ClusterRefused, gradebook_backup.SnapshotFailed) as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return 2
        if not found:
            print(f"{assignment}: nothing to grade: put each hand-in in "
                  f"submitted/<student>/{assignment}/{assignment.notebook}")
            status = max(status, 1)
            continue
        summary = results.write_summary(COURSE, assignment, found, sandboxed=not args.no_sandbox)
        print()
        print(summary.read_text())
        url = results.db_url(COURSE)  # with GRADEBOOK_URL set: the database, never its password
        where = COURSE.gradebook.name if url == f"sqlite:///{COURSE.gradebook}" else make_url(url).render_as_string(True)
        report = results.report_path(COURSE, assignment)
        print(f"Reports: {report.relative_to(COURSE.root)}, {summary.relative_to(COURSE.root)}. Grades are in {where}.")
        print(_deadline_lines(assignment))
        if hasattr(found, "graded"):
            print(f"{assignment}: {len(found.graded)} graded, {len(found.unchanged)} unchanged since their last grading"
                  + ("" if not found.unchanged else " (make grade FORCE=1 grades them again)") + ".")
        if getattr(found, "audit", None) is not None:
            print("\n" + found.audit.summary(COURSE.root))
        failed = [r for r in found if r.status == "failed"]
        if failed:  # the student's code is not to blame for these: the batch did not go through
            print(f"\nERROR: {assignment}: {len(failed)} hand-in{'s' * (len(failed) > 1)} could not be graded for reasons "
                  "other than the student's code: " + ", ".join(f"{r.student} ({r.note or 'failed'})" for r in failed)
                  + f". nbgrader's log: {autograde.log_path(COURSE, assignment).relative_to(COURSE.root)}",
                  file=sys.stderr)
            status = 3
    return status


def _deadline_lines(assignment: layout.Assignment) -> str:
    """The due date, the late penalty's rule and the extensions of an assignment, for people."""
    with Gradebook(results.db_url(COURSE)) as gb:
        due = deadlines.due_date(gb, assignment)
        granted = {s.student.id: s.duedate for s in gb.assignment_submissions(assignment.name) if s.extension}
    tz, rule = deadlines.lms_timezone(COURSE), deadlines.policy(COURSE)
    if due is None:
        return (f"{assignment}: no due date, so no late penalty (make due ASSIGNMENT={assignment} "
                "DUE=\"2026-12-15 23:59 Europe/Paris\" sets one)")
    lines = [f"{assignment}: due {deadlines.shown(due, tz)}; late penalty: {rule.percent_per_day:g}% of the earned points "
             f"per started day late, for at most {rule.max_days} days, then all of them"]
    path = deadlines.extensions_path(COURSE, assignment)
    with Gradebook(results.db_url(COURSE)) as gb:
        known = {s.id for s in gb.students} | set(intake.students(COURSE.submitted, assignment))
    extensions = deadlines.read_extensions(COURSE, assignment, known, due)
    for student, extension in sorted(extensions.items()):
        lines.append(f"  extension: {student}, {deadlines.extension_note(extension, tz)}"
                     + ("" if student in granted else " (not yet in the gradebook: make grade applies it)"))
    if not extensions:
        lines.append(f"  no extensions ({path.relative_to(COURSE.root)}: student,due,reason)")
    return "\n".join(lines)


def cmd_due(args) -> int:
    """Sets an assignment's due date in the gradebook, or prints it with its extensions."""
    if args.due and not args.assignment:
        print("ERROR: which assignment is due then? make due ASSIGNMENT=... DUE=\"...\"", file=sys.stderr)
        return 2
    chosen = [layout.assignment(args.assignment)] if args.assignment else COURSE.assignments()
    try:
        for assignment in chosen:
            if args.due:
                due = deadlines.parse_time(args.due)
                with Gradebook(results.db_url(COURSE)) as gb:
                    released = assignment.name in {a.name for a in gb.assignments}
                if not released:  # nbgrader grades only an assignment it released (with its notebooks)
                    grading.release(COURSE, assignment)
                deadlines.set_due(results.db_url(COURSE), assignment, due)
            print(_deadline_lines(assignment))
    except deadlines.DeadlineError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_feedback(args) -> int:
    chosen = _graded(args)
    for assignment in chosen:
        grading.feedback(COURSE, assignment)
        print(f"{assignment}: feedback/<student>/{assignment}/{assignment}.html")
    return 0 if chosen else 1


def cmd_export(args) -> int:
    from . import export

    chosen = _graded(args)
    if not chosen:
        return 1
    found = export.rows(COURSE, chosen)
    if not found:
        print("No students in the gradebook yet: run `make grade` first.")
        return 1
    graded = {a.name: sum(r.by_assignment[a.name].status == "graded" for r in found) for a in chosen}
    print(f"wrote {export.write_grades(COURSE, chosen, found).relative_to(COURSE.root)}: {len(found)} students; graded: "
          + ", ".join(f"{n} in {a}" for a, n in graded.items()))
    if args.moodle_worksheet:
        if len(chosen) != 1:
            print("ERROR: a Moodle grading worksheet belongs to one assignment: name it (make export ASSIGNMENT=... "
                  f"WORKSHEET=...; assignments: {', '.join(map(str, chosen))})", file=sys.stderr)
            return 2
        try:
            path, problems = export.fill_moodle_worksheet(COURSE, chosen[0], found, Path(args.moodle_worksheet))
        except export.WorksheetError as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return 2
        print(f"wrote {path.relative_to(COURSE.root)}: upload it to the Moodle assignment (Grading action > "
              "Upload grading worksheet)")
        for problem in problems:
            print(f"  - {problem}")
    return 0


def cmd_collect(args) -> int:
    from . import collect

    zip_path = Path(args.zip)
    if not zip_path.is_file():
        print(f"ERROR: {zip_path} does not exist: give the zip downloaded from the LMS (make collect ZIP=...)",
              file=sys.stderr)
        return 2
    known = COURSE.assignments()
    if not args.assignment and len(known) != 1:
        print("ERROR: which assignment is this zip for? Name it: make collect ZIP=... ASSIGNMENT=... (assignments: "
              f"{', '.join(map(str, known))})", file=sys.stderr)
        return 2
    assignment = layout.assignment(args.assignment) if args.assignment else known[0]
    archive = COURSE.root / "downloaded" / assignment.name / "archive"
    if archive.parent.exists():
        shutil.rmtree(archive.parent)
    archive.mkdir(parents=True)
    shutil.copy(zip_path, archive)
    if args.worksheet:  # its "Last modified (submission)" column gives the submission times (coursekit/collect.py)
        worksheet = Path(args.worksheet)
        if not worksheet.is_file():
            print(f"ERROR: {worksheet} does not exist: give the grading worksheet downloaded from the Moodle assignment",
                  file=sys.stderr)
            return 2
        shutil.copy(worksheet, archive.parent / collect.WORKSHEET)
    grading.nbgrader(COURSE, "zip_collect", assignment.name)
    found = collect.record_participants(COURSE, assignment, results.db_url(COURSE))
    print(f"recorded the name and Moodle participant id of {len(found)} students in the gradebook")
    return 0


def cmd_scores(args) -> int:
    chosen = _graded(args)
    for assignment in chosen:
        found = results.current(COURSE, assignment)
        print(f"{assignment}:")
        print(results.table(found))
    return 0 if chosen else 1


def cmd_report(args) -> int:
    from . import report  # imports matplotlib: only when asked

    chosen = _graded(args)
    for assignment in chosen:
        paths = report.write(COURSE, assignment)
        print(f"{assignment}: CSV files: " + ", ".join(str(p.relative_to(COURSE.root)) for p in paths[:-1]))
        print(f"{assignment}: class report: {paths[-1]}")
    return 0 if chosen else 1


def cmd_similarity(args) -> int:
    from . import similarity  # imports copydetect (and matplotlib): only when asked

    chosen = _chosen(args, COURSE.handed_in(), "has hand-ins in submitted/")
    status = 0 if chosen else 1
    for assignment in chosen:
        try:
            report, paths = similarity.write(COURSE, assignment)
        except similarity.NoRelease as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return 2
        for student, why in report.answers.skipped:
            print(f"{assignment}: skipped {student}: {why}")
        if not report.answers.by_student:
            print(f"{assignment}: no hand-in to compare in submitted/<student>/{assignment}/")
            status = 1
            continue
        pairs = report.notebook_rows()
        print(f"{assignment}: {len(report.answers.by_student)} hand-ins compared; {len(report.flagged)} flagged pairs of "
              f"answers, {len(pairs)} pairs of students to look at. {similarity.NOTICE}")
        print(f"{assignment}: {paths[0].relative_to(COURSE.root)}, similarity report: {paths[-1]}")
    return status


def cmd_bench_notebook(args) -> int:
    from . import benchmark  # imports nbclient: only when asked

    for assignment in _chosen(args, COURSE.assignments(), "in source/"):
        found = benchmark.run(assignment, args.repeats, args.hand_ins)
        print(benchmark.notebook_report(found))
        path = benchmark.write_grading_json({"notebook": found}, COURSE.reports_of(assignment) / "bench_grading.json")
        print(f"wrote {path.relative_to(COURSE.root)}")
    return 0


def cmd_gpu_check(args) -> int:
    import json

    from . import gpu_check

    report = gpu_check.run(args.device, _chosen(args, COURSE.assignments(), "in source/"), training=not args.no_training)
    print(gpu_check.summary(report))
    path = args.out or COURSE.root / "reports" / f"gpu_check_{args.device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")
    return 0 if report["same"] else 1


def cmd_bench_grading(args) -> int:
    from . import benchmark

    for assignment in _chosen(args, COURSE.assignments(), "in source/"):
        result = {} if args.only_cluster else benchmark.grading_throughput(assignment, args.submissions, args.jobs)
        if result:
            print(benchmark.grading_report(result))
        result["cluster"] = benchmark.cluster_against_pool(assignment, args.submissions, args.jobs)
        print(benchmark.cluster_report(result["cluster"]))
        path = benchmark.write_grading_json(result, COURSE.reports_of(assignment) / "bench_grading.json")
        print(f"wrote {path.relative_to(COURSE.root)}")
    return 0


def cmd_bench_training(args) -> int:
    from . import material

    with_bench = [a for a in layout.assignments() if material.has(a, "bench_training")]
    for assignment in _chosen(args, with_bench, "has a training benchmark (source_text/<assignment>/bench_training.py)"):
        bench = material.module(assignment, "bench_training")  # imports transformers: only when asked
        bench.main(args.device, args.steps, args.warmup, args.overfit_steps, args.overfit_seconds, args.out)
    return 0


def cmd_catalogue(args) -> int:
    from . import catalogue

    status = 0
    for assignment in _chosen(args, catalogue.with_catalogue(), "has a catalogue (source_text/<assignment>/catalogue.py)"):
        entries = catalogue.load(assignment)
        batch = catalogue.batch_of(assignment, entries)
        students = [s for s, group in batch.items() if any(part.lower() in name.lower() for part in args.only
                                                            for name in [s, *(e.name for e in group)])] if args.only else None
        if students == []:
            continue
        print(f"{assignment}:")
        if args.draws:
            varying = _varying_with_the_draw(assignment, batch, students, args.draws)
            print("\n".join(varying) if varying else f"  every entry got the same points on {args.draws} draws")
            status = status or bool(varying)
            continue
        print(catalogue.table(catalogue.grade_entries(assignment, entries, students)))
    return status


def _varying_with_the_draw(assignment, batch, students, draws) -> list[str]:
    """One line per entry whose points change from draw to draw (coursekit/draws.py), judged in this process."""
    from . import draws as drawn_inputs

    source = nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)
    lines = []
    for student in students if students is not None else list(batch):
        group = batch[student]
        found = drawn_inputs.judge(source, {k: v for e in group for k, v in e.cells.items()}, draws)
        for exercise, points in found.varying().items():
            entry = next(e.name for e in group if exercise in e.cells)
            lines.append(f"  {entry}: {exercise} gets {' or '.join(f'{p:g}' for p in points)} points, by draw")
    return lines


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number, 1 or more, got {text!r}")
    return int(text)


def cmd_nbgrader(arguments: list[str]) -> int:
    return grading.nbgrader(COURSE, *arguments, check=False).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    every = argparse.ArgumentParser(add_help=False)
    every.add_argument("--assignment", metavar="NAME",
                       help="only this assignment (default: every assignment that has work for this command)")
    grade = commands.add_parser("grade", parents=[every], help="autograde every hand-in in submitted/ and write "
                                "reports/<assignment>/grading.csv")
    grade.add_argument("--no-sandbox", action="store_true", help="run student code without the sandbox (not recommended)")
    grade.add_argument("--jobs", type=_positive, default=None, metavar="N",
                       help="hand-ins graded at a time (default: one per core)")
    grade.add_argument("--force", action="store_true",
                       help="grade every hand-in again (default: only those new or changed since their last grading)")
    grade.add_argument("--cluster", metavar="ADDRESS", default=None,
                       help="grade on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786; default: "
                       "$DASK_SCHEDULER_ADDRESS, else this machine); needs a PostgreSQL gradebook (GRADEBOOK_URL)")
    grade.set_defaults(run=cmd_grade)
    export = commands.add_parser("export", parents=[every], help="grades for the LMS: reports/grades.csv, every "
                                 "assignment (and a Moodle grading worksheet)")
    export.add_argument("--moodle-worksheet", metavar="FILE", help="the grading worksheet downloaded from Moodle, to fill in")
    export.set_defaults(run=cmd_export)
    collect = commands.add_parser("collect", parents=[every], help="put an LMS (Moodle) download into submitted/ "
                                  "and record the students' names and participant ids")
    collect.add_argument("zip", metavar="ZIP", help="the zip downloaded from the LMS")
    collect.add_argument("--worksheet", metavar="FILE", help="Moodle's grading worksheet of the assignment: its "
                         "\"Last modified (submission)\" column gives the submission times")
    due = commands.add_parser("due", parents=[every], help="set an assignment's due date in the gradebook (with its time "
                              "zone), or print it with the late penalty's rule and the extensions")
    due.add_argument("due", nargs="?", metavar="DATE", help='e.g. "2026-12-15 23:59 Europe/Paris"')
    due.set_defaults(run=cmd_due)
    collect.set_defaults(run=cmd_collect)
    bench = commands.add_parser("bench-grading", parents=[every], help="grading throughput, one worker against one per core")
    bench.add_argument("--submissions", type=_positive, default=20, metavar="N", help="hand-ins in the batch (default 20)")
    bench.add_argument("--jobs", type=_positive, default=None, metavar="N", help="parallel workers (default: one per core)")
    bench.add_argument("--only-cluster", action="store_true", help="only the row of the Dask cluster against the local pool")
    bench.set_defaults(run=cmd_bench_grading)
    training = commands.add_parser("bench-training", parents=[every], help="an assignment's training benchmark "
                                   "(pw2: tokens/s of the reference solution, with SDPA and with the seed's per-step "
                                   "tokenization, and the time to overfit one batch)")
    training.add_argument("--device", default="cpu", help="cpu (default) or cuda (fp16 autocast)")
    training.add_argument("--steps", type=int, help="timed training steps per variant (default: 3 on CPU, 100 on GPU)")
    training.add_argument("--warmup", type=int, help="untimed steps first (default: 1 on CPU, 10 on GPU)")
    training.add_argument("--overfit-steps", type=int, help="give up overfitting after this many steps (default 5000)")
    training.add_argument("--overfit-seconds", type=float,
                          help="... or after this many seconds (default: 120 on CPU, 1200 on GPU)")
    training.add_argument("--out", type=Path, help="the JSON report (default: reports/<assignment>/bench_training_<device>.json)")
    training.set_defaults(run=cmd_bench_training)
    notebook_bench = commands.add_parser("bench-notebook", parents=[every], help="CPU and wall seconds per hand-in "
                                         "of a batch graded by one worker, warm and cold kernels, against plain nbconvert")
    notebook_bench.add_argument("--hand-ins", type=_positive, default=8, metavar="N", help="copies of the solution in "
                                "the batch (default 8; the start-up of the worker is shared by the batch)")
    notebook_bench.add_argument("--repeats", type=_positive, default=2, metavar="N", help="runs of each (default 2)")
    notebook_bench.set_defaults(run=cmd_bench_notebook)
    gpu = commands.add_parser("gpu-check", parents=[every], help="the solution's hidden and public checks and the "
                              "catalogue's entries about devices, on the GPU and on the CPU (same scores?), and a short "
                              "training benchmark: one JSON report")
    gpu.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run: both passes on the CPU)")
    gpu.add_argument("--no-training", action="store_true", help="leave out the training benchmark")
    gpu.add_argument("--out", type=Path, help="the JSON report (default: reports/gpu_check_<device>.json)")
    gpu.set_defaults(run=cmd_gpu_check)
    catalogue = commands.add_parser("catalogue", parents=[every], help="grade each assignment's catalogue of known right "
                                    "and wrong answers: what the public checks flag, what grading takes away")
    catalogue.add_argument("--only", nargs="+", metavar="TEXT",
                           help="only the submissions whose id contains one of these (e.g. wrong-decode correct-)")
    catalogue.add_argument("--draws", type=_positive, metavar="N",
                           help="instead: judge each entry N times, on inputs drawn anew each time (in this process, "
                           "no kernel), and list those whose points change with the draw (exit status 1 if any)")
    catalogue.set_defaults(run=cmd_catalogue)
    for name, function, help in [
        ("notebook", cmd_notebook, "rebuild the instructor notebooks from their text twins in source_text/"),
        ("notebook-text", cmd_notebook_text, "rewrite the text twins in source_text/ from the instructor notebooks"),
        ("release", cmd_release, "nbgrader generate_assignment: release/, its Colab badge from the git remote origin"),
        ("solutions", cmd_solutions, "nbgrader generate_solution: the solution notebook in solutions/"),
        ("samples", cmd_samples, "write demo submissions into submitted/demo-*/"),
        ("feedback", cmd_feedback, "one HTML feedback page per graded hand-in, in feedback/"),
        ("scores", cmd_scores, "print the table of scores (the gradebook's, manual grades and late penalty included)"),
        ("report", cmd_report, "the class report for TAs: reports/<assignment>/class_report.html and CSV files"),
        ("similarity", cmd_similarity, "pairs of students whose answers are far more alike than the class's: "
         "reports/<assignment>/similarity.html and similarity.csv (informs only, never changes a grade)"),
    ]:
        commands.add_parser(name, parents=[every], help=help).set_defaults(run=function)
    commands.add_parser("nbgrader", help="run nbgrader with the arguments that follow, once nbgrader_config.py "
                        "is known to load (the Makefile runs nbgrader this way)")
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["nbgrader"]:  # every argument after it is nbgrader's
            return cmd_nbgrader(argv[1:])
        args = parser.parse_args(argv)
        return args.run(args)
    except (grading.ConfigError, layout.UnknownAssignment) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
