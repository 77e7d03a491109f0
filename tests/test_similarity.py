"""The similarity report (`make similarity`): reports/<assignment>/similarity.html and similarity.csv.

A synthetic class of hand-ins, made in a throwaway copy of the course (no grading: the report reads notebooks):
- ada: the instructor's answers; bob: ada's, disguised (every local name renamed, methods and functions in the
  other order, comments rewritten, blank lines added), in a Colab copy that lost its nbgrader metadata;
- dee: the catalogue's correct answers written differently; cy: dee's answers to half the notebook, own elsewhere;
- eve, fay, gus, hal: more of the catalogue's independently written correct answers (those of a few exercises);
- a hostile hand-in whose code and student id carry HTML, and an unreadable one.
The copies must be flagged and the independent answers not.
"""

import csv
import itertools
import re

import nbformat
import pytest

import handins
from browser import chromium_page
from conftest import tree_digest
from coursekit import answers, catalogue, cli, layout, similarity, student_ids
from assignments import PW2, PW3

# ------------------------------------------------------------------------------------------- disguises

KEEP = {"self", "super", "nn", "torch", "F", "math", "float", "min", "max", "range", "len", "int", "dim", "keepdim",
        "device", "dtype", "True", "False", "None"}


def renamed(code: str) -> str:
    """Every name the code assigns (locals, parameters, attributes, helpers) renamed; docstrings left alone."""
    names = set(re.findall(r"\b(?:def|class)\s+(\w+)", code)) | set(re.findall(r"self\.(\w+)\s*=", code))
    for targets in re.findall(r"^\s*([\w, ]+?)\s*=[^=]", code, re.M):
        names |= {t.strip() for t in targets.split(",")}
    for params in re.findall(r"def \w+\(([^)]*)\)", code):
        names |= {p.split("=")[0].strip() for p in params.split(",") if p.strip()}
    mapping = {n: f"my_{n.lower()}_{i}" for i, n in enumerate(sorted(names - KEEP)) if n.isidentifier()
               and not n.startswith("__")}
    # the exercise's own name (the function or class it defines) stays, or the answer would not be the exercise
    for defined in re.findall(r"^(?:def|class)\s+(\w+)", code, re.M)[-1:]:
        mapping.pop(defined, None)
    parts = re.split(r'(""".*?""")', code, flags=re.S)
    return "".join(p if p.startswith('"""') else re.sub(r"\b(\w+)\b", lambda m: mapping.get(m[1], m[1]), p)
                   for p in parts)


def reordered(code: str) -> str:
    """The top-level functions and classes, or else a class's methods, in the reverse order."""
    lines = code.splitlines(keepends=True)
    for indent in ("", "    "):
        starts = [i for i, line in enumerate(lines) if re.match(indent + r"(def|class|@)\b", line)
                  and not (i and lines[i - 1].startswith(indent + "@"))]
        if len(starts) > 1:
            blocks = ["".join(lines[a:b]).rstrip("\n") + "\n\n" for a, b in zip(starts, starts[1:] + [len(lines)], strict=True)]
            return "".join(lines[:starts[0]]) + "".join(reversed(blocks))
    return code


def disguised(code: str) -> str:
    code = re.sub(r"#.*$", "# my own comment, I promise", renamed(reordered(code)), flags=re.M)
    return "".join(line + ("\n" if i % 2 else "") for i, line in enumerate(code.splitlines(keepends=True)))


# ------------------------------------------------------------------------------------------- the class

def handwritten(assignment: layout.Assignment, entry: catalogue.Entry) -> bool:
    """Whether the catalogue writes the entry's code out (its body verbatim in catalogue.py), rather than making it
    from a shared template with one knob turned: only those answers are independently written."""
    text = (assignment.material / "catalogue.py").read_text(encoding="utf-8")
    code = next(iter(entry.cells.values()))
    return code.strip() in text or code.split("\n", 1)[-1].strip() in text


def independent(assignment: layout.Assignment) -> dict[str, list[str]]:
    """For each exercise: the instructor's answer, then the catalogue's independently written correct answers."""
    source = nbformat.read(layout.COURSE.source_notebook(assignment), as_version=4)
    found = {exercise: [code] for exercise, code in answers.solution_answers(source).items()}
    for entry in catalogue.load(assignment):
        if entry.correct and handwritten(assignment, entry):
            for exercise, code in entry.cells.items():
                found[exercise].append(code)
    return found


LONG = ["multi_head_attention", "causal_multi_head_attention", "CausalSelfAttention", "Transformer", "decode"]
HALF = ["self_attention", "multi_head_attention", "FeedForward", "lm_loss", "train_step"]
HOSTILE_ID = "=x-hostile"  # a valid id that a spreadsheet would take for a formula
HTML_ID = "=x<img src=y onerror=alert(1)>"  # not a valid id (intake refuses it): skipped, shown escaped
PAYLOAD = ('    note = "</pre></div><script>document.title = \'pwned\'</script>'
           '<img src=x onerror=\\"document.title = \'pwned\'\\">"\n')


def class_answers() -> dict[str, dict[str, str]]:
    variants = independent(PW2)
    ada = {exercise: codes[0] for exercise, codes in variants.items()}
    dee = {exercise: codes[1] for exercise, codes in variants.items() if len(codes) > 1}
    made = {"ada": ada, "bob": {exercise: disguised(ada[exercise]) for exercise in LONG},
            "dee": dee, "cy": {**{e: disguised(dee[e]) for e in HALF}, "CausalSelfAttention": variants["CausalSelfAttention"][2]}}
    for n, student in enumerate(["eve", "fay", "gus", "hal"], start=2 + 1):
        made[student] = {exercise: codes[n] for exercise, codes in variants.items() if len(codes) > n}
    # the hostile one copies ada's CausalSelfAttention with a payload in it: it is flagged, so shown side by side
    csa = ada["CausalSelfAttention"].replace("    def forward(self, x):\n", "    def forward(self, x):\n" + PAYLOAD)
    made[HOSTILE_ID] = {"CausalSelfAttention": csa}
    return made


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A copy of the course (its committed release/) with the synthetic class's hand-ins in submitted/."""
    course = layout.copy_course(tmp_path_factory.mktemp("similarity"))
    release = nbformat.read(course.release_notebook(PW2), as_version=4)
    for student, mine in class_answers().items():
        nb = answers.fill(release, mine)
        folder = layout.submission_dir(course.submitted, student, PW2)
        folder.mkdir(parents=True)
        if student == "bob":  # a Colab copy under another name, its nbgrader metadata lost
            (folder / "Copy of pw2_transformers.ipynb").write_text(nbformat.writes(handins.metadata_lost(nb)))
        else:
            nbformat.write(nb, folder / PW2.notebook)
    html_named = layout.submission_dir(course.submitted, HTML_ID, PW2)
    html_named.mkdir(parents=True)
    nbformat.write(answers.fill(release, class_answers()["ada"]), html_named / PW2.notebook)
    broken = layout.submission_dir(course.submitted, "broken", PW2)
    broken.mkdir(parents=True)
    (broken / PW2.notebook).write_text("<html>not a notebook</html>")
    before = tree_digest(course.submitted)
    report, paths = similarity.write(course, PW2)
    return course, report, paths, before


def flagged_pairs(report) -> set[tuple[str, str, str]]:
    return {(p.exercise, p.a, p.b) for p in report.pairs if p.flagged}


def test_copies_are_flagged_and_independent_answers_are_not(synthetic):
    _, report, _, _ = synthetic
    flagged = flagged_pairs(report)
    # bob's disguised copy of ada's long answers: every one flagged, even through a metadata-lost Colab copy
    assert {(e, "ada", "bob") for e in LONG} <= flagged
    assert ("CausalSelfAttention", HOSTILE_ID, "ada") in flagged
    # cy's copy of half of dee's notebook: flagged as a whole notebook (its exercises are short)
    assert (similarity.NOTEBOOK, "cy", "dee") in flagged
    row = next(r for r in report.notebook_rows() if (r["a"], r["b"]) == ("cy", "dee"))
    assert set(row["similar"]) >= set(HALF) - {"self_attention"}
    copies = {("ada", "bob"), ("cy", "dee"), (HOSTILE_ID, "ada"), (HOSTILE_ID, "bob")}
    wrongly = sorted(f for f in flagged if (f[1], f[2]) not in copies and (f[2], f[1]) not in copies)
    assert not wrongly, f"independent answers flagged: {wrongly}"
    # cy's copies of dee's lm_loss and train_step are too short to be flagged on their own: the notebook view is
    assert not {("lm_loss", "cy", "dee"), ("train_step", "cy", "dee")} & flagged


def test_unreadable_handins_are_skipped_with_the_reason_and_nothing_is_written(synthetic):
    course, report, paths, before = synthetic
    skipped = dict(report.answers.skipped)
    assert set(skipped) == {"broken", student_ids.shown(HTML_ID)}
    assert "not valid JSON" in skipped["broken"] and "markup characters" in skipped[student_ids.shown(HTML_ID)]
    assert "broken" in paths[-1].read_text()
    assert tree_digest(course.submitted) == before


def test_starter_code_is_left_out():
    release = "def f(x):\n    \"\"\"Doc.\"\"\"\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert similarity.answer_code(release, release) == ""
    assert similarity.answer_code("def f(x):\n    \"\"\"Doc.\"\"\"\n    # mine\n", release) == ""
    assert similarity.answer_code("def f(x):\n    \"\"\"Doc.\"\"\"\n    return x + 1\n", release) == "    return x + 1\n"


def test_renames_reordering_comments_and_blank_lines_change_nothing():
    code = independent(PW2)["CausalSelfAttention"][0]
    pair = similarity.compare(code, disguised(code), [])
    assert min(pair.shares) > 0.95  # all but the class line, which moved
    assert reordered(code) != code and renamed(code) != code


@pytest.mark.parametrize("assignment", [PW2, PW3], ids=str)
def test_threshold_on_the_catalogues_independently_written_correct_answers(assignment):
    """Each exercise's class: the instructor's answer and the catalogue's independently written correct ones. No pair
    is flagged; and a disguised copy of the instructor's answer added to that class is, wherever the answer is long
    enough to reach the matched minimum."""
    source = nbformat.read(layout.COURSE.release_notebook(assignment), as_version=4)
    released = {answers.grade_id(c): c.source for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")}
    copies_flagged = 0
    for exercise, codes in independent(assignment).items():
        codes = [similarity.answer_code(c, released[exercise]) for c in codes]
        boilerplate = list(similarity._fingerprint(released[exercise], []).hashes)
        pairs = [similarity.compare(a, b, boilerplate, exercise) for a, b in itertools.combinations(codes, 2)]
        similarity.flags(pairs, exercise, len(codes))
        assert not [p for p in pairs if p.flagged], exercise
        copy = similarity.answer_code(disguised(independent(assignment)[exercise][0]), released[exercise])
        with_copy = [*pairs, *(similarity.compare(c, copy, boilerplate, exercise, str(i), "copy")
                               for i, c in enumerate(codes))]
        similarity.flags(with_copy, exercise, len(codes) + 1)
        flagged = [(p.a, p.b) for p in with_copy if p.flagged]
        assert flagged in ([], [("0", "copy")]), (exercise, flagged)
        copies_flagged += bool(flagged)
    assert copies_flagged >= {PW2: 7, PW3: 3}[assignment]


def test_csv_lists_the_pairs_flagged_first_and_is_spreadsheet_safe(synthetic):
    _, report, paths, _ = synthetic
    with paths[0].open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == similarity.CSV_HEADER
    flagged = [r for r in rows if r["flagged"] == "yes"]
    assert len(flagged) == len(flagged_pairs(report)) and rows[:len(flagged)] == flagged
    hostile = [r for r in rows if HOSTILE_ID in (r["student_a"], r["student_b"])
               or "'" + HOSTILE_ID in (r["student_a"], r["student_b"])]
    assert hostile and all(HOSTILE_ID not in (r["student_a"], r["student_b"]) for r in hostile)  # quoted


def test_page_is_self_contained_escaped_and_highlights_the_matches(synthetic):
    _, report, paths, _ = synthetic
    page = paths[-1]
    text = page.read_text()
    assert "<script" not in text and "<img" not in text and "&lt;script&gt;" in text
    assert similarity.NOTICE in text
    with chromium_page() as browser:
        requests = []
        browser.on("request", lambda r: requests.append(r.url))
        dialogs = []
        browser.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        browser.goto(page.as_uri())
        browser.wait_for_load_state("load")
        assert browser.title() == "Similarity report: pw2_transformers"
        assert not dialogs and not browser.js_errors
        assert requests == [page.as_uri()]
        assert browser.eval_on_selector_all("img", "imgs => imgs.length") == 0
        body = browser.inner_text("body")
        assert "it never changes a grade" in body
        assert "document.title = 'pwned'" in body and HOSTILE_ID in body  # shown as text
        pairs = browser.eval_on_selector_all(".pair", "ps => ps.map(p => p.querySelectorAll('mark').length)")
        assert len(pairs) >= len(report.flagged) and all(n > 0 for n in pairs)
        assert "my own comment" in body  # the copy's rewritten comments are shown, not compared
        assert "broken" in body and "not valid JSON" in body


def test_make_similarity_command(synthetic, monkeypatch, capsys):
    course, _, _, _ = synthetic
    monkeypatch.setattr(cli, "COURSE", course)
    assert cli.main(["similarity", "--assignment", PW2.name]) == 0
    out = capsys.readouterr().out
    assert "skipped broken" in out and "similarity.html" in out and "never changes a grade" in out
    assert cli.main(["similarity", "--assignment", PW3.name]) == 1  # no hand-ins


def test_without_a_release_the_error_says_what_to_run(tmp_path):
    with pytest.raises(similarity.NoRelease, match="run `make release` first"):
        similarity.read_answers(layout.Course(tmp_path), PW2)
