"""Demo submissions made from the instructor notebook, for `make demo` and the tests.

Each sample is what a student could hand in: the release notebook with answers written in (the
instructor's, or a few typical mistakes), untouched, or a damaged file. They go into
submitted/demo-<name>/ and never overwrite a real student's folder.
"""

import shutil

import nbformat

from . import answers, layout

MARKER = ".coursekit-sample"  # marks a folder made here, which a later run may replace

# Typical mistakes, one exercise each: (grade_id of the exercise, wrong answer).
MISTAKES = {
    "self_attention": '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    weights = (Q @ K.transpose(-2, -1)).softmax(dim=-1)   # forgot to divide by sqrt(d_k)
    return weights @ V
''',
    "lm_loss": '''def lm_loss(logits, input_ids, attention_mask):
    # shifted, but the padding is counted
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
''',
    "decode": '''@torch.no_grad()
def decode(model, input_ids, max_new_tokens=32):
    # no model.eval(), and the context is never cropped
    for _ in range(max_new_tokens):
        logits = model(input_ids)
        input_ids = torch.cat((input_ids, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return input_ids
''',
}


def notebooks(course: layout.Course = layout.COURSE) -> dict[str, nbformat.NotebookNode]:
    """The gradable sample notebooks, by name: the full solution, the untouched release, typical mistakes."""
    source = nbformat.read(course.source_notebook, as_version=4)
    release = nbformat.read(course.release_notebook, as_version=4)
    solution = answers.solution_answers(source)
    return {
        "solution": answers.fill(release, solution),
        "untouched": release,
        "mistakes": answers.fill(release, {**solution, **MISTAKES}),
    }


def write(course: layout.Course = layout.COURSE) -> list[str]:
    """Writes every sample under the course's submitted/; returns the student ids written."""
    nbs = notebooks(course)
    files = {name: (layout.NOTEBOOK, nbformat.writes(nb)) for name, nb in nbs.items()}
    files["renamed"] = (f"Copy of {layout.NOTEBOOK}", nbformat.writes(nbs["solution"]))  # as Colab names a copy
    files["empty"] = (layout.NOTEBOOK, "")
    files["not-json"] = (layout.NOTEBOOK, "<html>Sign in to Google Drive</html>")
    files["missing"] = None  # a folder without a notebook
    written = []
    for name, file in files.items():
        student = f"demo-{name}"
        folder = layout.submission_dir(course.submitted, student)
        if folder.parent.exists():
            if not (folder.parent / MARKER).exists():
                raise FileExistsError(f"{folder.parent} exists and is not a demo sample: refusing to overwrite it")
            shutil.rmtree(folder.parent)
        folder.mkdir(parents=True)
        (folder.parent / MARKER).write_text("made by `python -m coursekit samples`\n")
        if file is not None:
            (folder / file[0]).write_text(file[1], encoding="utf-8")
        written.append(student)
    return written
