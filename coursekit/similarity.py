"""The similarity report for TAs: pairs of students whose answers to an exercise are far more alike than the class's.

For every exercise, each pair of students' answers is compared: the code of the exercise's solution cell only, read
through the grader's own intake and repair (so a renamed notebook, or one whose metadata was lost, still maps its
cells to the exercises), with the release's starter code left out (the lines of the released cell: the signature,
the docstring, `raise NotImplementedError()`). Nothing under submitted/ is ever written.

The comparison is copydetect's (winnowing, Schleimer, Wilkerson and Aiken 2003): the code is tokenised by Pygments,
every name becomes `V` (functions `F`, classes `O`), every string `S`, comments and blank space are dropped, and the
fingerprints of the k-grams of what is left are compared as sets. So renamed variables, rewritten comments, added
blank lines and reordered functions or methods change nothing; the release's starter code is also passed to it as
boilerplate, whose fingerprints never count. A pair's similarity is the larger of the two shares of each answer's
code found in the other; its matched code is the amount found in both, counted in characters of the normalised code
(`Q = K @ V` is `V=V@V`: 5).

The rule, for each exercise, over the class's pairs (see `flags`): a pair is flagged when its similarity is at least
FLOOR, above the class's median + SPREAD × MAD (the median absolute deviation, scaled by 1.4826 to read as a standard
deviation), and its matched code is at least MIN_MATCHED. An exercise with fewer than MIN_PAIRS pairs has no
distribution to speak of: there the floor and the matched minimum alone decide. Correct answers to a short exercise
are naturally alike (a 4-line self-attention is `V,V,V=V@V,V@V,V@V` whoever writes it), so they never reach
MIN_MATCHED; and an exercise where the whole class writes the same code has a high median, so nobody stands out.
The same rule is applied to whole notebooks (every answer of a student, one after the other), with NOTEBOOK_FLOOR
and NOTEBOOK_MIN_MATCHED: a copy of half the notebook is flagged there even when each exercise copied is short.

The report only informs: it never changes a grade, and says so.
"""

import html
import io
import itertools
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import answers, intake, layout, repair
from .report import STYLE, html_table, number, write_csv

K = 25           # copydetect's noise threshold: a match shorter than 25 characters of normalised code is ignored
WINDOW = 1       # its guarantee threshold is 25 too: every k-gram is a fingerprint (answers are short)
FLOOR = 0.6      # similarity a pair must reach, whatever the class
SPREAD = 3.0     # ... and how far above the class's median, in MADs
MIN_MATCHED = 80  # normalised characters of code found in both answers: about 4 lines
MIN_PAIRS = 6    # an exercise answered by fewer than 4 students has too few pairs to make a distribution of
NOTEBOOK_FLOOR = 0.4
NOTEBOOK_MIN_MATCHED = 240
MAX_ANSWER_CHARS = 20_000  # an answer longer than this is compared on its first 20,000 characters (the longest
# solution is under 2,000)
NOTEBOOK = "(whole notebook)"
MAD_SCALE = 1.4826

NOTICE = ("This report only informs: it never changes a grade. A flagged pair is a reason to read two answers side by "
          "side, not evidence of copying; grades come only from make grade and the gradebook.")


# ------------------------------------------------------------------------------------------------ answers

def starter_lines(release_source: str) -> set[str]:
    """The lines of a released exercise cell, stripped: what every student starts from."""
    return {line.strip() for line in release_source.splitlines() if line.strip()}


def answer_code(source: str, release_source: str) -> str:
    """The code of a student's answer as compared: the cell without the release's lines; "" if nothing else is left
    but blank lines and comments (the exercise was not answered)."""
    starter = starter_lines(release_source)
    lines = [line for line in source.splitlines() if line.strip() not in starter]
    if not any(line.strip() and not line.strip().startswith("#") for line in lines):
        return ""
    return "\n".join(lines) + "\n"


@dataclass
class ClassAnswers:
    exercises: list[str]                        # in notebook order
    by_student: dict[str, dict[str, str]]       # student -> exercise -> code as compared (answered exercises only)
    release: dict[str, str]                     # exercise -> the released cell
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (student, why its hand-in was not read)
    notes: list[tuple[str, str]] = field(default_factory=list)    # (student, what was cut)


class NoRelease(FileNotFoundError):
    pass


def read_answers(course: layout.Course, assignment: layout.Assignment) -> ClassAnswers:
    """Every student's answers in submitted/<student>/<assignment>/, read as the grader reads them (intake's checks,
    then repair against the release): an unreadable hand-in is skipped with the reason. Nothing is written."""
    path = course.release_notebook(assignment)
    if not path.is_file():
        raise NoRelease(f"no release notebook {path.relative_to(course.root)}: run `make release` first")
    release = nbformat.read(path, as_version=4)
    exercises = answers.exercise_ids(release)
    released = {answers.grade_id(c): c.source for c in release.cells if answers.grade_id(c) in exercises}
    found = ClassAnswers(exercises, {}, released)
    for student in intake.students(course.submitted, assignment):
        verdict = intake.inspect(layout.submission_dir(course.submitted, student, assignment), student, assignment)
        if not verdict.gradable:
            found.skipped.append((verdict.student, verdict.note))  # escaped, if not a valid student id
            continue
        try:
            handed_in = intake._read_notebook(verdict.content.decode("utf-8"))
            repaired, _ = repair.repair(handed_in, release)
        except Exception as error:  # a notebook that nbformat reads but repair cannot use: skipped, never fatal
            found.skipped.append((student, f"{verdict.notebook.name} could not be matched to the release: {error}"))
            continue
        mine = {}
        for cell in repaired.cells:
            exercise = answers.grade_id(cell)
            if exercise in released and cell.source != released[exercise]:
                code = answer_code(cell.source, released[exercise])
                if len(code) > MAX_ANSWER_CHARS:
                    found.notes.append((student, f"{exercise}: only the first {MAX_ANSWER_CHARS:,} of its {len(code):,} "
                                                 "characters compared"))
                    code = code[:MAX_ANSWER_CHARS]
                if code:
                    mine[exercise] = code
        found.by_student[student] = mine
    return found


# ------------------------------------------------------------------------------------------------ comparing

def _fingerprint(code: str, boilerplate: list[int]):
    from copydetect import CodeFingerprint  # imports matplotlib: only when asked

    return CodeFingerprint("answer.py", K, WINDOW, boilerplate=boilerplate, fp=io.StringIO(code), language="python")


@dataclass
class Pair:
    """Two students' answers to one exercise (or their whole notebooks, exercise NOTEBOOK)."""
    exercise: str
    a: str
    b: str
    similarity: float                 # the larger of the two shares
    shares: tuple[float, float]       # the share of a's code found in b's, and of b's in a's
    matched: int                      # normalised characters of code found in both
    regions: tuple[list[tuple[int, int]], list[tuple[int, int]]]  # (start, end) in a's code, in b's code
    flagged: bool = False


def compare(code_a: str, code_b: str, boilerplate: list[int], exercise: str = "", a: str = "a", b: str = "b",
            fingerprints: dict | None = None) -> Pair:
    """copydetect's comparison of two answers (the release's starter code as boilerplate)."""
    from copydetect import compare_files

    cache = {} if fingerprints is None else fingerprints
    for key, code in ((a, code_a), (b, code_b)):
        if key not in cache:
            cache[key] = _fingerprint(code, boilerplate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        overlap, shares, slices = compare_files(cache[a], cache[b])
    if overlap:  # copydetect counts the first answer's matched code; the second's is its share of its code
        overlap = min(overlap, round(shares[1] * cache[b].token_coverage))
    regions = tuple(_regions(s, len(code)) for s, code in zip(slices, (code_a, code_b), strict=True))
    shares = (float(shares[0]), float(shares[1]))
    return Pair(exercise, a, b, max(shares), shares, int(overlap), regions)


def _regions(slices, length: int) -> list[tuple[int, int]]:
    """copydetect's slices (2 × n) as (start, end) pairs within the code, merged where they touch."""
    if len(slices) == 0 or len(slices[0]) == 0:
        return []
    regions: list[tuple[int, int]] = []
    for start, end in sorted(zip(slices[0].tolist(), slices[1].tolist(), strict=True)):
        start, end = max(0, min(int(start), length)), max(0, min(int(end), length))
        if end <= start:
            continue
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions


@dataclass
class Distribution:
    """The similarities of one exercise's pairs, and the cut-off the rule derives from them."""
    exercise: str
    answers: int
    pairs: int
    median: float
    mad: float
    floor: float
    min_matched: int

    @property
    def cutoff(self) -> float:
        """The similarity a pair must exceed: median + SPREAD × MAD (scaled), and at least the floor."""
        return max(self.floor, self.median + SPREAD * MAD_SCALE * self.mad)


def flags(pairs: list[Pair], exercise: str, answers_count: int, floor: float = FLOOR,
          min_matched: int = MIN_MATCHED) -> Distribution:
    """Sets `flagged` on the pairs of one exercise (or of whole notebooks) by the rule, and returns the distribution:
    flagged when similarity ≥ floor, similarity > median + SPREAD × MAD of the class's pairs, matched ≥ min_matched.
    With fewer than MIN_PAIRS pairs there is no distribution to speak of (one pair is its own median): then only the
    floor and the matched minimum apply."""
    values = [p.similarity for p in pairs] if len(pairs) >= MIN_PAIRS else []
    median = statistics.median(values) if values else 0.0
    mad = statistics.median(abs(v - median) for v in values) if values else 0.0
    distribution = Distribution(exercise, answers_count, len(pairs), median, mad, floor, min_matched)
    spread = median + SPREAD * MAD_SCALE * mad
    for pair in pairs:
        pair.flagged = pair.similarity >= floor and pair.similarity > spread and pair.matched >= min_matched
    return distribution


@dataclass
class SimilarityReport:
    assignment: layout.Assignment
    answers: ClassAnswers
    distributions: list[Distribution]   # one per exercise, then the whole notebooks
    pairs: list[Pair]                   # every compared pair, exercises then whole notebooks

    @property
    def flagged(self) -> list[Pair]:
        return sorted((p for p in self.pairs if p.flagged and p.exercise != NOTEBOOK), key=lambda p: -p.similarity)

    def notebook_rows(self) -> list[dict]:
        """Pairs of students with a flagged exercise or a flagged notebook: their flagged exercises, the exercises
        at or above FLOOR, and the notebook's similarity; most flagged first."""
        by_pair: dict[tuple[str, str], dict] = {}
        for pair in self.pairs:
            row = by_pair.setdefault((pair.a, pair.b), {"a": pair.a, "b": pair.b, "flagged": [], "similar": [],
                                                         "notebook": None})
            if pair.exercise == NOTEBOOK:
                row["notebook"] = pair
            else:
                if pair.flagged:
                    row["flagged"].append(pair.exercise)
                if pair.similarity >= FLOOR:
                    row["similar"].append(pair.exercise)
        rows = [r for r in by_pair.values() if r["flagged"] or (r["notebook"] and r["notebook"].flagged)]
        return sorted(rows, key=lambda r: (-len(r["flagged"]), -(r["notebook"].similarity if r["notebook"] else 0)))

    def pair(self, exercise: str, a: str, b: str) -> Pair | None:
        a, b = sorted((a, b))
        return next((p for p in self.pairs if (p.exercise, p.a, p.b) == (exercise, a, b)), None)

    def code(self, student: str, exercise: str) -> str:
        if exercise == NOTEBOOK:
            return notebook_code(self.answers, student)
        return self.answers.by_student[student].get(exercise, "")


def notebook_code(found: ClassAnswers, student: str) -> str:
    """A student's answers one after the other, in notebook order (what the whole-notebook comparison reads)."""
    return "".join(f"# ---- {exercise}\n{found.by_student[student][exercise]}"
                   for exercise in found.exercises if exercise in found.by_student[student])


def collect(course: layout.Course, assignment: layout.Assignment) -> SimilarityReport:
    """Compares every pair of students, exercise by exercise and notebook by notebook, and flags them by the rule."""
    found = read_answers(course, assignment)
    boilerplate = {exercise: list(_fingerprint(source, []).hashes) for exercise, source in found.release.items()}
    pairs, distributions = [], []
    for exercise in found.exercises:
        who = sorted(s for s, mine in found.by_student.items() if exercise in mine)
        cache: dict = {}
        mine = [compare(found.by_student[a][exercise], found.by_student[b][exercise], boilerplate[exercise], exercise,
                        a, b, cache) for a, b in itertools.combinations(who, 2)]
        distributions.append(flags(mine, exercise, len(who)))
        pairs += mine
    every = sorted({h for hashes in boilerplate.values() for h in hashes})
    who = sorted(s for s, mine in found.by_student.items() if mine)
    codes = {s: notebook_code(found, s) for s in who}
    cache = {}
    whole = [compare(codes[a], codes[b], every, NOTEBOOK, a, b, cache) for a, b in itertools.combinations(who, 2)]
    distributions.append(flags(whole, NOTEBOOK, len(who), NOTEBOOK_FLOOR, NOTEBOOK_MIN_MATCHED))
    return SimilarityReport(assignment, found, distributions, pairs + whole)


# ------------------------------------------------------------------------------------------------------ HTML

SIDE_BY_SIDE = """
.notice { border: 2px solid #c44e52; background: #fdf0f0; padding: 0.6em 1em; }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1em; margin-bottom: 2em; }
.pair pre { background: #f8f8f8; border: 1px solid #ccc; padding: 0.5em; overflow-x: auto; font-size: 0.8em;
            white-space: pre; margin: 0; }
mark { background: #ffd966; }
h3 { margin-bottom: 0.3em; }
"""


def highlighted(code: str, regions: list[tuple[int, int]]) -> str:
    """The code, escaped, with the matched regions in <mark>."""
    parts, at = [], 0
    for start, end in regions:
        parts += [html.escape(code[at:start]), "<mark>", html.escape(code[start:end]), "</mark>"]
        at = end
    parts.append(html.escape(code[at:]))
    return "".join(parts)


def _side_by_side(report: SimilarityReport, pair: Pair, why: str) -> str:
    columns = []
    for student, regions, share in zip((pair.a, pair.b), pair.regions, pair.shares, strict=True):
        columns.append(f"<div><p><b>{html.escape(student)}</b>: {100 * share:.0f}% of this code found in the other</p>"
                       f"<pre>{highlighted(report.code(student, pair.exercise), regions)}</pre></div>")
    return (f"<h3>{html.escape(pair.exercise)}: {html.escape(pair.a)} and {html.escape(pair.b)}</h3>"
            f"<p>similarity {100 * pair.similarity:.0f}%, {pair.matched} characters of normalised code matched; "
            f"{html.escape(why)}</p><div class=\"pair\">{''.join(columns)}</div>")


def rule_text() -> str:
    return (f"A pair of answers to an exercise is flagged when its similarity is at least {100 * FLOOR:.0f}%, above the "
            f"class's median + {SPREAD:g} × MAD for that exercise (the median absolute deviation of the class's pairs, "
            f"× {MAD_SCALE}), and at least {MIN_MATCHED} characters of normalised code match (names count as one "
            "character, comments and blank space not at all: about 4 lines). An exercise answered by fewer than 4 students "
            f"(under {MIN_PAIRS} pairs) has no distribution to speak of: there the floor and the matched minimum alone "
            "decide. Similarity is the larger of the two "
            "shares of each answer's code found in the other, by copydetect's winnowing fingerprints: renamed "
            "variables, reordered functions, rewritten comments and blank lines change nothing. Correct answers to "
            "a short exercise are alike whoever writes them, so they never reach the matched minimum; and where the "
            "whole class writes the same code, nobody stands out. Whole notebooks (every answer of a student, in "
            f"order) are compared by the same rule, with {100 * NOTEBOOK_FLOOR:.0f}% and {NOTEBOOK_MIN_MATCHED} "
            "characters: a copy of half the notebook is flagged there even when each exercise copied is short. "
            "Compared: each exercise's solution cell only, without the release's starter code; comments are shown "
            "but not compared.")


def render(report: SimilarityReport) -> str:
    """The report as one HTML page: inline CSS, no script, nothing fetched; every student's text escaped."""
    name = html.escape(report.assignment.name)
    found = report.answers
    parts = [f"<h1>Similarity report: {name}</h1>", f'<p class="notice"><b>{html.escape(NOTICE)}</b></p>',
             f"<p>{len(found.by_student)} hand-ins compared"
             + (f", {len(found.skipped)} skipped (below)" if found.skipped else "") + ".</p>",
             "<h2>The rule</h2>", f"<p>{html.escape(rule_text())}</p>",
             "<h2>Exercises</h2>",
             html_table(["exercise", "answers", "pairs", "median", "MAD", "cut-off", "flagged pairs"],
                    [[d.exercise, d.answers, d.pairs, f"{100 * d.median:.0f}%", f"{100 * d.mad:.0f}%",
                      f"{100 * d.cutoff:.0f}%", sum(p.flagged for p in report.pairs if p.exercise == d.exercise)]
                     for d in report.distributions], numeric={1, 2, 3, 4, 5, 6})]
    rows = report.notebook_rows()
    parts.append("<h2>Pairs of students</h2>")
    if rows:
        parts.append("<p>Every pair with a flagged exercise or a flagged notebook: the exercises flagged, those at or "
                     f"above {100 * FLOOR:.0f}% similarity, and the whole notebooks' similarity.</p>")
        parts.append(html_table(["students", "flagged exercises", f"exercises ≥ {100 * FLOOR:.0f}%", "notebook similarity",
                             "notebook flagged"],
                            [[f"{r['a']} and {r['b']}", ", ".join(r["flagged"]) or "-", ", ".join(r["similar"]) or "-",
                              f"{100 * r['notebook'].similarity:.0f}%" if r["notebook"] else "-",
                              "yes" if r["notebook"] and r["notebook"].flagged else "no"] for r in rows]))
    else:
        parts.append("<p>No pair flagged.</p>")
    parts.append("<h2>Flagged pairs, side by side</h2>")
    shown = set()
    sections = []
    for pair in report.flagged:
        sections.append(_side_by_side(report, pair, "flagged for this exercise"))
        shown.add((pair.exercise, pair.a, pair.b))
    for row in rows:
        if row["notebook"] and row["notebook"].flagged:
            for exercise in row["similar"]:
                pair = report.pair(exercise, row["a"], row["b"])
                if pair and (exercise, pair.a, pair.b) not in shown:
                    sections.append(_side_by_side(report, pair, "not flagged on its own: shown because the whole "
                                                  "notebooks are flagged"))
                    shown.add((exercise, pair.a, pair.b))
    parts += sections or ["<p>None.</p>"]
    if found.skipped or found.notes:
        parts.append("<h2>Hand-ins not compared, or not whole</h2>")
        parts.append(html_table(["student", "why"], [[s, why] for s, why in found.skipped + found.notes]))
    parts.append(f'<p class="students">The same pairs are in reports/{name}/{CSV_FILE}. {html.escape(NOTICE)}</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>Similarity report: {name}</title>\n<style>{STYLE}{SIDE_BY_SIDE}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")


# ------------------------------------------------------------------------------------------------------ CSV

CSV_FILE = "similarity.csv"
CSV_HEADER = ["exercise", "student_a", "student_b", "similarity", "share_a", "share_b", "matched", "cutoff", "flagged"]


def write(course: layout.Course, assignment: layout.Assignment) -> tuple[SimilarityReport, list[Path]]:
    """Writes reports/<assignment>/similarity.csv (every pair with any code in common, flagged first) and
    reports/<assignment>/similarity.html (last in the list returned)."""
    report = collect(course, assignment)
    folder = course.reports_of(assignment)
    folder.mkdir(parents=True, exist_ok=True)
    cutoffs = {d.exercise: d.cutoff for d in report.distributions}
    rows = sorted((p for p in report.pairs if p.similarity > 0), key=lambda p: (not p.flagged, -p.similarity))
    csv_path = write_csv(folder / CSV_FILE, CSV_HEADER,
                          [[p.exercise, p.a, p.b, number(p.similarity), number(p.shares[0]), number(p.shares[1]),
                            p.matched, number(cutoffs[p.exercise]), "yes" if p.flagged else "no"] for p in rows])
    page = folder / "similarity.html"
    page.write_text(render(report), encoding="utf-8")
    return report, [csv_path, page]
