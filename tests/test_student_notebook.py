"""The student's side of the notebook: the Colab badge, the install cell, the training pipeline, and a
student's run offline on a CPU, ending with the "Check my work" cell.

The pipeline tests run the notebook's own code (its locked cells and the solution's answers) in this
process, on the local sample data and a BPE tokenizer trained on it, as the notebook does offline.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from coursekit import answers, colab, layout, notebook_text
from assignments import PW2, exercises

EXERCISES = list(exercises(PW2))


def cell(nb, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def outputs(nb, grade_id: str, stream: str = "stdout") -> str:
    return "".join(o.text for o in cell(nb, grade_id).outputs if o.output_type == "stream" and o.name == stream)


def all_text(nb) -> str:
    """Everything the executed notebook printed or displayed."""
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def errors(nb) -> list[str]:
    return [f"{c.metadata.get('nbgrader', {}).get('grade_id') or c.id}: {o.ename}: {o.evalue}"
            for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]


# ---------------------------------------------------------------------------------------------------------
# Colab first


def test_the_release_opens_in_colab_from_the_badge_in_its_header(release_nb):
    """The badge points at whichever GitHub repository `make release` found (tests/test_colab.py), and at this
    release notebook in it."""
    url = colab.badge_url(release_nb.cells[0].source)
    found = re.fullmatch(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w./-]+?)/"
                         + re.escape(str(layout.COURSE.release_notebook(PW2).relative_to(layout.ROOT))), url or "")
    assert found, f"the badge does not open release/{PW2.name}/{PW2.notebook}: {url}"
    assert url == colab.release_url(PW2, *found.groups())
    assert layout.COURSE.release_notebook(PW2).is_file()


def test_the_badge_follows_the_repository_set_in_one_place():
    header = notebook_text.notebook_from_text(PW2.text_twin).cells[0].source
    moved = colab.with_badge(header, PW2, "someone/elsewhere", "spring")
    assert colab.badge_url(moved) == "https://colab.research.google.com/github/someone/elsewhere/blob/spring/release/pw2_transformers/pw2_transformers.ipynb"
    assert moved.count("Open In Colab") == 1 and colab.with_badge(moved, PW2, "someone/elsewhere", "spring") == moved
    assert colab.with_badge(moved, PW2) == header, "only the badge line changes"
    assert colab.badge_url(colab.with_badge("# Title\n\nText", PW2)) == colab.release_url(PW2), \
        "a header without a badge gets one"


def test_colab_installs_only_the_missing_libraries_and_never_torch(source_nb):
    source = cell(source_nb, "install").source
    listed = re.search(r"missing = \[name for name in \[(.*?)\]", source, re.S).group(1)
    libraries = set(re.findall(r'"([\w-]+)"', listed))
    assert {"transformers", "datasets", "bertviz"} <= libraries
    assert not {"torch", "pytorch", "torchvision"} & libraries
    assert "find_spec" in source and "if missing and IN_COLAB:\n    %pip install -q {packages}" in source


# ---------------------------------------------------------------------------------------------------------
# The training pipeline, run from the notebook's own cells


@pytest.fixture(scope="module")
def notebook(source_nb):
    """The namespace of the notebook after its data, tokenizer and pipeline cells ran offline, with the solutions."""
    namespace = {"GRADING": True, "OFFLINE": True, "IN_COLAB": False, "device": "cpu"}
    exec(cell(source_nb, "imports").source, namespace)
    for code in answers.solution_answers(source_nb).values():
        exec(code, namespace)
    with contextlib.chdir(layout.COURSE.source_notebook(PW2).parent):
        exec(cell(source_nb, "load_data").source, namespace)
        exec(cell(source_nb, "load_tokenizer").source, namespace)
    exec(cell(source_nb, "training_pipeline").source, namespace)
    return namespace


def test_blocks_follow_the_token_stream_and_every_token_is_a_target_exactly_once(notebook):
    """Across blocks and batches, no token is lost or repeated: each block starts on the last token of the
    previous one, so the targets (input_ids[:, 1:] where attention_mask[:, 1:] is 1) are the stream, less its first token."""
    lines, tokenizer = notebook["dataset"]["train"], notebook["tokenizer"]
    stream = [token for line in lines["text"] for token in tokenizer(line)["input_ids"]]
    blocks = notebook["tokenize_once"](lines, tokenizer, seq_len=16)
    loader = notebook["make_loader"](blocks, batch_size=3, pad_id=tokenizer.pad_token_id)
    assert len(loader) > 3, "the sample should give several batches, hence several batch boundaries"
    targets, start = [], 0
    for input_ids, attention_mask in loader:
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            n = sum(mask)
            assert ids[:n] == stream[start:start + n], f"block at stream position {start} is not the next slice of the stream"
            targets += ids[1:n]
            start += n - 1
    assert targets == stream[1:]


def test_short_blocks_are_padded_with_eos_and_masked(notebook):
    tokenizer = notebook["tokenizer"]
    pad_id = tokenizer.pad_token_id
    assert pad_id == tokenizer.eos_token_id
    blocks = notebook["tokenize_once"](notebook["dataset"]["train"], tokenizer, seq_len=16, lines_per_group=5)
    padded_rows = 0
    for input_ids, attention_mask in notebook["make_loader"](blocks, batch_size=4, pad_id=pad_id):
        assert input_ids.dtype == attention_mask.dtype == torch.long and input_ids.shape == attention_mask.shape
        assert input_ids.shape[1] <= 16
        for row, n in enumerate(attention_mask.sum(1).tolist()):
            assert attention_mask[row, :n].eq(1).all() and attention_mask[row, n:].eq(0).all(), "1s, then 0s"
            assert input_ids[row, n:].eq(pad_id).all()
            padded_rows += n < input_ids.shape[1]
    assert padded_rows > 0, "groups of 5 lines end with short blocks: some rows must be padded"


def test_training_batches_are_shuffled_and_validation_batches_are_not(notebook):
    tokenizer = notebook["tokenizer"]
    blocks = notebook["tokenize_once"](notebook["dataset"]["train"], tokenizer, seq_len=16)
    first_rows = set()
    for seed in range(5):
        torch.manual_seed(seed)
        first_rows.add(tuple(next(iter(notebook["make_loader"](blocks, 4, tokenizer.pad_token_id, shuffle=True)))[0][0].tolist()))
    assert len(first_rows) > 1
    validation = notebook["make_loader"](blocks, 4, tokenizer.pad_token_id)
    assert torch.equal(next(iter(validation))[0], next(iter(validation))[0])


class CountingLoader:
    """A loader that counts the batches taken from it."""

    def __init__(self, batches):
        self.batches, self.taken = batches, 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.taken += 1
            yield batch


def test_validation_reads_a_bounded_number_of_batches_and_averages_over_target_tokens(notebook):
    tokenizer = notebook["tokenizer"]
    blocks = notebook["tokenize_once"](notebook["dataset"]["train"], tokenizer, seq_len=16, lines_per_group=5)
    batches = list(notebook["make_loader"](blocks, batch_size=4, pad_id=tokenizer.pad_token_id))
    assert len(batches) > 3
    torch.manual_seed(0)
    model = notebook["Transformer"](vocab_size=len(tokenizer), hidden_size=16, num_layers=1, num_heads=2, dropout=0.5, seq_len=16)
    loader = CountingLoader(batches)
    loss = notebook["evaluate"](model, loader, max_batches=2)
    assert loader.taken == 2
    assert model.training, "evaluate puts the model back in training mode"
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(ids)[:, :-1][mask[:, 1:].bool()] for ids, mask in batches[:2]])
        targets = torch.cat([ids[:, 1:][mask[:, 1:].bool()] for ids, mask in batches[:2]])
    expected = torch.nn.functional.cross_entropy(logits, targets).item()
    assert loss == pytest.approx(expected, rel=1e-5), "the mean over every real target token of the batches read (in eval mode)"


def test_overfitting_one_batch_drives_the_loss_down_and_logs_to_tensorboard(notebook, tmp_path):
    tokenizer = notebook["tokenizer"]
    blocks = notebook["tokenize_once"](notebook["dataset"]["train"], tokenizer, seq_len=32).select(range(4))
    loader = notebook["make_loader"](blocks, batch_size=4, pad_id=tokenizer.pad_token_id, shuffle=True)
    torch.manual_seed(0)
    model = notebook["Transformer"](vocab_size=len(tokenizer), hidden_size=32, num_layers=2, num_heads=2, dropout=0.0,
                                    seq_len=32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    writer = SummaryWriter(str(tmp_path))
    history = notebook["train"](model, optimizer, loader, loader, steps=40, validate_every=20, validation_batches=1,
                                writer=writer)
    losses = [loss for _, loss in history["train"]]
    assert len(losses) == 40
    assert losses[-1] < losses[0] / 2, (
        f"40 steps on one batch should memorize it: the loss went from {losses[0]:.2f} to {losses[-1]:.2f}")
    assert [step for step, _ in history["validation"]] == [20, 40]
    scalars = EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"]
    assert {"loss/train", "loss/validation", "perplexity/train", "perplexity/validation"} <= set(scalars)


def test_a_checkpoint_loads_back_the_same_model(notebook, tmp_path):
    config = dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, dropout=0.1, seq_len=8)
    torch.manual_seed(0)
    model = notebook["Transformer"](**config)
    notebook["save_checkpoint"](model, config, tmp_path / "model.pt")
    restored = notebook["load_checkpoint"](tmp_path / "model.pt")
    assert type(restored) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True))
    prompt = torch.tensor([[1, 2, 3]])
    assert torch.equal(notebook["decode"](model, prompt, 10), notebook["decode"](restored, prompt, 10))


# ---------------------------------------------------------------------------------------------------------
# A student's run: offline, on the CPU, outside grading


def execute(notebook_path, folder, allow_errors=False) -> nbformat.NotebookNode:
    """Runs a notebook with plain `jupyter nbconvert --execute`, as a student's run without network or GPU."""
    shutil.copytree(notebook_path.parent, folder)
    env = {key: value for key, value in os.environ.items() if key != "NBGRADER_EXECUTION"}
    env.update(HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
               "--output", "executed.ipynb", "--ExecutePreprocessor.timeout=300", notebook_path.name]
    if allow_errors:
        command.append("--allow-errors")
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return nbformat.read(folder / "executed.ipynb", as_version=4)


@pytest.fixture(scope="module")
def solution_run(tmp_path_factory):
    return execute(layout.COURSE.solution_notebook(PW2), tmp_path_factory.mktemp("student") / "solution")


def test_the_solution_runs_top_to_bottom_offline_on_the_cpu(solution_run):
    assert errors(solution_run) == []
    assert "No GPU found: running on the CPU instead." in outputs(solution_run, "device")
    data = outputs(solution_run, "load_data").strip().splitlines()
    assert data == ["Offline: using a small sample of WikiText (data/wikitext_sample.json) instead of downloading WikiText-103."]
    text = all_text(solution_run)
    assert "Bonus skipped: it downloads BERT from the Hugging Face Hub, which can't be reached here." in text


def test_without_its_data_folder_the_notebook_uses_the_sample_it_embeds(tmp_path, monkeypatch):
    """In Colab, a notebook opened from GitHub has no data/ beside it: the offline fallback (download failed, or
    HF_HUB_OFFLINE) reads the same sample from the copy embedded in its load_data cell."""
    source = nbformat.read(layout.COURSE.source_notebook(PW2), as_version=4)
    cell = next(c for c in source.cells if answers.grade_id(c) == "load_data")
    monkeypatch.chdir(tmp_path)
    namespace = {"GRADING": False, "OFFLINE": True}
    exec(compile(cell.source, "<load_data>", "exec"), namespace)
    expected = json.loads((layout.COURSE.source_notebook(PW2).parent / "data" / "wikitext_sample.json").read_text())
    assert {split: list(namespace["dataset"][split]["text"]) for split in expected} == expected
    assert not (tmp_path / "data").exists()


def test_the_students_run_trains_saves_and_generates(solution_run, tmp_path):
    text = all_text(solution_run)
    losses = [float(x) for x in re.findall(r"step \d+: train loss ([\d.]+)", text)]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert "overfit_one_batch: 8 training blocks of up to 64 tokens, 30 steps" in text
    assert 'Training configuration "offline", because the notebook runs offline' in text
    assert re.search(r"One training step takes [\d.]+ s here \(cpu\): the 30 steps and their validations should take "
                     r"about \d+ s", text), "the expected time is printed before training"
    assert re.search(r"TensorBoard: this run writes to runs/\d{8}-\d{6}-offline-overfit_one_batch\n", text)
    assert "The model loaded from transformer.pt generates the same text: True" in text
    assert "generated    :" in text


def test_check_my_work_reports_the_public_checks_of_every_exercise_on_the_solution(solution_run):
    report = outputs(solution_run, "check_my_work")
    assert outputs(solution_run, "check_my_work", "stderr") == ""
    for exercise in EXERCISES:
        match = re.search(rf"^  ✓ {exercise}: (\d+)/(\d+) public checks passed", report, re.M)
        assert match and match.group(1) == match.group(2), f"{exercise}:\n{report}"
    assert "10/10 exercises pass their public checks" in report
    assert "all tests passed" not in report.lower(), "hidden tests run at grading time: never claim everything passed"
    assert "File > Download > Download .ipynb" in report and "without renaming it" in report


def test_check_my_work_lists_every_exercise(source_nb):
    listed = re.findall(r'"(\w+)"', cell(source_nb, "check_my_work").source)
    assert listed == answers.exercise_ids(source_nb) == EXERCISES
    meta = cell(source_nb, "check_my_work").metadata["nbgrader"]
    assert meta["locked"] and not meta["grade"], "locked, and worth no points"


def test_check_my_work_reports_failures_on_the_release(release_nb, tmp_path):
    run = execute(layout.COURSE.release_notebook(PW2), tmp_path / "release", allow_errors=True)
    report = outputs(run, "check_my_work")
    assert outputs(run, "check_my_work", "stderr") == ""
    for exercise in EXERCISES:
        assert re.search(rf"^  ✗ {exercise}: 0/\d+ public checks passed \(0/\d+ points\)", report, re.M), f"{exercise}:\n{report}"
    assert ": not implemented yet" in report and "NotImplementedError" not in report
    assert "0/10 exercises pass their public checks" in report


def test_check_my_work_names_wrong_answers_and_check_cells_not_run(source_nb, release_nb, tmp_path):
    solution = answers.solution_answers(source_nb)
    wrong_loss = ("def lm_loss(logits, input_ids, attention_mask):\n"
                  "    return F.cross_entropy(logits.flatten(0, 1), input_ids.flatten())\n")
    nb = answers.fill(release_nb, {**solution, "lm_loss": wrong_loss})
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_decode"]
    folder = tmp_path / "handin"
    folder.mkdir()
    nbformat.write(nb, folder / PW2.notebook)
    shutil.copytree(layout.COURSE.release_notebook(PW2).parent / "data", folder / "data")
    run = execute(folder / PW2.notebook, tmp_path / "run", allow_errors=True)
    report = outputs(run, "check_my_work")
    assert re.search(r"^  ✗ lm_loss: 1/3 public checks passed \(1/7 points\)\n"
                     r"      ✗ without padding: .*the targets are not shifted", report, re.M), report
    assert "  ? decode: its check cell has not run yet" in report
    assert "  ✓ train_step: 3/3 public checks passed" in report
    assert "8/10 exercises pass their public checks" in report


def test_check_my_work_is_skipped_while_grading(release_nb, capsys):
    namespace = {"GRADING": True}
    exec(cell(release_nb, "imports").source, namespace)
    namespace["device"] = "cpu"
    exec(cell(release_nb, "grading_helpers").source, namespace)
    exec(cell(release_nb, "check_my_work").source, namespace)
    assert capsys.readouterr().out == ("Check my work is skipped while the notebook is graded: "
                                       "the check cell below each exercise counts.\n")


# ---------------------------------------------------------------------------------------------------------
# The bertviz bonus


def bonus_cells(nb) -> tuple[str, str]:
    """The bonus's two code cells: the one that computes BERT's attentions, and the one that draws them."""
    attentions = next(c.source for c in nb.cells if "def bert_attentions" in c.source)
    drawing = next(c.source for c in nb.cells if "head_view(" in c.source and c.source != attentions)
    return attentions, drawing


@pytest.fixture()
def tiny_bert(tmp_path, monkeypatch):
    """A tiny random BERT saved on disk, which `from_pretrained("bert-base-uncased")` loads instead of the Hub's."""
    import transformers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "will", "go", "for", "a", "run", "and", "jump", "into",
             "lake", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(words))
    transformers.BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=32)).save_pretrained(tmp_path)
    for owner in [transformers.BertModel, transformers.BertTokenizer]:
        load = owner.from_pretrained.__func__
        monkeypatch.setattr(owner, "from_pretrained", classmethod(
            lambda cls, name, *args, load=load, **kwargs: load(cls, str(tmp_path), *args, **kwargs)))


def test_the_bertviz_bonus_shows_every_layer_with_special_tokens_and_leaves_globals_alone(source_nb, tiny_bert, capsys):
    attentions_cell, drawing_cell = bonus_cells(source_nb)
    students = {name: object() for name in ["tokenizer", "transformer", "model", "inputs", "outputs", "text", "input_ids"]}
    namespace = {"GRADING": False, "OFFLINE": False, "torch": torch, **students}
    exec(attentions_cell, namespace)
    assert all(namespace[name] is value for name, value in students.items()), "the bonus must not replace the GPT's names"
    assert set(namespace) - set(students) - {"GRADING", "OFFLINE", "torch", "__builtins__"} == {
        "bert_attentions", "attentions", "bert_tokens"}
    tokens, attentions = namespace["bert_tokens"], namespace["attentions"]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]", "BERT's special tokens are part of what it attends to"
    assert len(attentions) == 2 and attentions[0].shape == (1, 2, len(tokens), len(tokens)), "every layer, every head"
    exec(drawing_cell, namespace)
    assert "Bonus skipped" not in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["GRADING", "OFFLINE"])
def test_the_bertviz_bonus_is_skipped_in_one_line_offline_and_while_grading(source_nb, mode, capsys):
    attentions_cell, drawing_cell = bonus_cells(source_nb)
    namespace = {"GRADING": mode == "GRADING", "OFFLINE": True, "torch": torch}
    exec(attentions_cell, namespace)
    exec(drawing_cell, namespace)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Bonus skipped")
    assert namespace["attentions"] is None
