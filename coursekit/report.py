"""The class report for TAs: how the class did, what went wrong most often, and the hand-ins that need a look.

Reads what grading left in a course directory for one assignment (its results, scored by the gradebook: see
results.current, and the check lines of the autograded notebooks) and writes reports/<assignment>/class_report.html,
one self-contained page with its plots embedded, and CSV files with the same numbers: pass rates per exercise and
per check, and the most frequent failure messages.
"""

import base64
import html
import io
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import answers, checks, layout, results, spreadsheet
from .results import NothingGraded  # noqa: F401 (part of this module's interface)


@dataclass
class CheckStats:
    """One named check of one test cell, and the graded students who passed or failed it."""
    exercise: str
    check: str
    points: float
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass
class Failure:
    """One failure message of an exercise (numbers that differ between students shown as …), the students who
    got it and the checks that printed it."""
    exercise: str
    message: str
    students: list[str]
    checks: list[str]


@dataclass
class ClassReport:
    assignment: layout.Assignment
    results: list[results.Result]
    max_points: dict[str, float]    # exercise -> points, in notebook order
    checks: list[CheckStats]
    failures: list[Failure]         # most frequent first

    @property
    def graded(self) -> list[results.Result]:
        return [r for r in self.results if r.status == "graded"]

    @property
    def needs_a_look(self) -> list[results.Result]:
        """Not graded, failed, or graded with a note (repaired, tampering, time-outs)."""
        return [r for r in self.results if r.status != "graded" or r.note]

    def exercise_rates(self) -> list[dict]:
        graded = self.graded
        rows = []
        for exercise, points in self.max_points.items():
            scores = [r.exercises.get(exercise, 0.0) for r in graded]
            full = sum(s >= points for s in scores)
            rows.append({"exercise": exercise, "max_points": points, "graded": len(scores), "full_marks": full,
                         "full_marks_rate": full / len(scores) if scores else 0.0,
                         "mean_points": statistics.mean(scores) if scores else 0.0})
        return rows

    def check_rates(self) -> list[dict]:
        graded = len(self.graded)
        return [{"exercise": c.exercise, "check": c.check, "points": c.points, "passed": len(c.passed),
                 "failed": len(c.failed), "not_run": graded - len(c.passed) - len(c.failed),
                 "pass_rate": len(c.passed) / graded if graded else 0.0} for c in self.checks]


# Numbers in failure messages (values, shapes, differences, addresses) vary from student to student.
NUMBER = re.compile(r"0x[0-9a-f]+|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.I)


def message_key(message: str) -> str:
    """What stays the same when the same mistake is made by different students: the message without its numbers."""
    return NUMBER.sub("\0", message)


def message_template(messages: list[str]) -> str:
    """The messages of one group (same key) as one: the numbers they share are kept, the others become …."""
    texts = NUMBER.split(messages[0])
    numbers = [NUMBER.findall(m) for m in messages]
    shown = [values[0] if len(set(values)) == 1 else "…" for values in zip(*numbers, strict=True)]
    return texts[0] + "".join(figure + text for figure, text in zip(shown, texts[1:], strict=True))


def collect(course: layout.Course, assignment: layout.Assignment, found: list[results.Result] | None = None
            ) -> ClassReport:
    """The class report's numbers, from the assignment's results (by default its current ones: results.current)
    and its autograded notebooks."""
    found = results.current(course, assignment) if found is None else found
    tests = results.test_points(course, assignment)
    stats: dict[tuple[str, str], CheckStats] = {}
    messages: dict[tuple[str, str], dict[str, str]] = {}  # (exercise, key) -> student -> message
    failed_checks: dict[tuple[str, str], dict[str, None]] = {}  # (exercise, key) -> checks that printed it
    for result in found:
        notebook = layout.submission_dir(course.autograded, result.student, assignment) / assignment.notebook
        if result.status != "graded" or not notebook.is_file():
            continue
        for test_id, lines in checks.by_test_cell(nbformat.read(notebook, as_version=4)).items():
            exercise = answers.exercise_of(test_id)
            for check in lines:
                entry = stats.setdefault((test_id, check.description), CheckStats(exercise, check.description, check.points))
                if check.passed:
                    entry.passed.append(result.student)
                    continue
                entry.failed.append(result.student)
                key = (exercise, message_key(check.reason))
                messages.setdefault(key, {}).setdefault(result.student, check.reason)
                failed_checks.setdefault(key, {})[check.description] = None
    order = {test_id: i for i, test_id in enumerate(tests)}
    ordered = sorted(stats, key=lambda k: order.get(k[0], len(order)))  # stable: checks in the order they ran
    exercise_order = {answers.exercise_of(t): i for t, i in order.items()}
    failures = [Failure(key[0], message_template(list(group.values())), list(group), list(failed_checks[key]))
                for key, group in messages.items()]
    failures.sort(key=lambda f: (-len(f.students), exercise_order.get(f.exercise, len(order))))
    return ClassReport(assignment, found, {answers.exercise_of(t): p for t, p in tests.items()},
                       [stats[k] for k in ordered], failures)


# ---------------------------------------------------------------------------------------------------- plots

def _png(figure: Figure) -> str:
    """The figure as a base64 PNG, rendered with Agg (no display needed)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def score_histogram(report: ClassReport) -> str:
    scores = [r.score for r in report.graded]
    top = max([r.max_score for r in report.results] + scores + [1])
    figure = Figure(figsize=(8, 3.5), layout="constrained")
    ax = figure.add_subplot()
    ax.hist(scores, bins=[top * i / 20 for i in range(21)], color="#4c72b0", edgecolor="white")
    ax.set(xlabel=f"score (out of {top:g})", ylabel="hand-ins", xlim=(0, top), title="Scores of the graded hand-ins")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(figure)


def _rate_bars(labels: list[str], rates: list[float], title: str, xlabel: str) -> str:
    figure = Figure(figsize=(8, 1 + 0.28 * max(len(labels), 3)), layout="constrained")
    ax = figure.add_subplot()
    positions = range(len(labels))
    ax.barh(positions, [100 * r for r in rates], color=["#55a868" if r >= 0.8 else "#dd8452" if r >= 0.5 else "#c44e52"
                                                       for r in rates])
    ax.set_yticks(positions, [_short(label) for label in labels], fontsize=8, parse_math=False)
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel=xlabel, title=title)
    return _png(figure)


def exercise_plot(report: ClassReport) -> str:
    rows = report.exercise_rates()
    return _rate_bars([r["exercise"] for r in rows], [r["full_marks_rate"] for r in rows],
                      "Full marks per exercise", "graded hand-ins with full marks (%)")


def check_plot(report: ClassReport) -> str:
    rows = report.check_rates()
    return _rate_bars([f"{r['exercise']}: {r['check']}" for r in rows], [r["pass_rate"] for r in rows],
                      "Pass rate per check", "graded hand-ins that passed the check (%)")


# ----------------------------------------------------------------------------------------------------- HTML

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; }
img { max-width: 100%; }
.students { font-size: 0.85em; color: #555; }
"""


def html_table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    """An HTML table; every cell is escaped (student ids, messages and notes are the students' text)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{html.escape(str(v))}</td>' if i in numeric
                                    else f"<td>{html.escape(str(v))}</td>" for i, v in enumerate(row)) + "</tr>\n"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _img(png: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt)}">'


def _percent(rate: float) -> str:
    return f"{100 * rate:.0f}%"


def render(report: ClassReport) -> str:
    """The report as one HTML page: inline CSS, plots as embedded PNG images, no script, nothing fetched."""
    graded = report.graded
    counts = {status: sum(r.status == status for r in report.results) for status in ("graded", "not graded", "failed")}
    parts = [f"<h1>Class report: {html.escape(report.assignment.name)}</h1>",
             f"<p>{len(report.results)} hand-ins: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".</p>"]
    if graded:
        scores = [r.score for r in graded]
        parts += [f"<p>Scores of the graded hand-ins: mean {statistics.mean(scores):.1f}, median "
                  f"{statistics.median(scores):g}, lowest {min(scores):g}, highest {max(scores):g} "
                  f"(out of {graded[0].max_score:g}).</p>",
                  "<h2>Score distribution</h2>", _img(score_histogram(report), "Histogram of the scores of the graded hand-ins"),
                  "<h2>Pass rates per exercise</h2>",
                  _img(exercise_plot(report), "Bar chart: share of graded hand-ins with full marks, per exercise"),
                  html_table(["exercise", "points", "full marks", "full-marks rate", "mean points"],
                         [[r["exercise"], f"{r['max_points']:g}", f"{r['full_marks']}/{r['graded']}",
                           _percent(r["full_marks_rate"]), f"{r['mean_points']:.1f}"] for r in report.exercise_rates()],
                         numeric={1, 2, 3, 4}),
                  "<h2>Pass rates per check</h2>",
                  _img(check_plot(report), "Bar chart: share of graded hand-ins that passed each check"),
                  html_table(["exercise", "check", "points", "passed", "failed", "not run", "pass rate"],
                         [[r["exercise"], r["check"], f"{r['points']:g}", r["passed"], r["failed"], r["not_run"],
                           _percent(r["pass_rate"])] for r in report.check_rates()], numeric={2, 3, 4, 5, 6})]
    else:
        parts.append("<p>No hand-in was graded: no scores or pass rates to show.</p>")
    parts.append("<h2>Most frequent failure messages</h2>")
    if report.failures:
        parts.append("<p>One row per message and exercise, with the students who got it (in any of the checks named); "
                     "numbers that differ from student to student are shown as …</p>")
        parts.append(html_table(["students", "exercise", "message", "who", "in the checks"],
                            [[len(f.students), f.exercise, f.message, ", ".join(f.students), "; ".join(f.checks)]
                             for f in report.failures], numeric={0}))
    else:
        parts.append("<p>No check failed.</p>")
    parts.append("<h2>Hand-ins that need a look</h2>")
    if report.needs_a_look:
        parts.append("<p>Not graded, failed, repaired, tampering, time-outs: the note says why.</p>")
        parts.append(html_table(["student", "status", "score", "note"],
                            [[r.student, r.status, f"{r.score:g}/{r.max_score:g}" if r.status == "graded" else "-", r.note]
                             for r in report.needs_a_look]))
    else:
        parts.append("<p>None.</p>")
    parts.append("<p class=\"students\">Made from the gradebook's scores (manual grades and late penalties included) and "
                 "the autograded notebooks; the same numbers are in " + ", ".join(CSV_FILES)
                 + f" in reports/{html.escape(report.assignment.name)}/.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>Class report: {html.escape(report.assignment.name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")


# ------------------------------------------------------------------------------------------------------ CSV

CSV_FILES = ["exercise_pass_rates.csv", "check_pass_rates.csv", "failure_messages.csv", "needs_a_look.csv"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """A CSV file that spreadsheets open without running anything (coursekit/spreadsheet.py)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = spreadsheet.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def number(value: float) -> str:
    """A number for a table or CSV: four significant digits."""
    return f"{value:.4g}"


def write(course: layout.Course, assignment: layout.Assignment, found: list[results.Result] | None = None) -> list[Path]:
    """Writes the CSV files and reports/<assignment>/class_report.html (last in the list returned), and grading.csv
    again with the same results (by default the current ones, scored by the gradebook)."""
    report = collect(course, assignment, found)
    results.write_report(course, assignment, report.results)
    folder = course.reports_of(assignment)
    exercise_rows = [[r["exercise"], number(r["max_points"]), r["graded"], r["full_marks"], number(r["full_marks_rate"]),
                      number(r["mean_points"])] for r in report.exercise_rates()]
    check_rows = [[r["exercise"], r["check"], number(r["points"]), r["passed"], r["failed"], r["not_run"],
                   number(r["pass_rate"])] for r in report.check_rates()]
    paths = [
        write_csv(folder / CSV_FILES[0], ["exercise", "max_points", "graded", "full_marks", "full_marks_rate", "mean_points"],
                   exercise_rows),
        write_csv(folder / CSV_FILES[1], ["exercise", "check", "points", "passed", "failed", "not_run", "pass_rate"],
                   check_rows),
        write_csv(folder / CSV_FILES[2], ["exercise", "message", "count", "students", "checks"],
                   [[f.exercise, f.message, len(f.students), "; ".join(f.students), "; ".join(f.checks)]
                    for f in report.failures]),
        write_csv(folder / CSV_FILES[3], ["student", "status", "score", "note"],
                   [[r.student, r.status, f"{r.score:g}" if r.status == "graded" else "", r.note] for r in report.needs_a_look]),
    ]
    page = folder / "class_report.html"
    page.write_text(render(report), encoding="utf-8")
    return [*paths, page]
