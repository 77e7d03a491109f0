"""What pw2's text tells students, checked against what its code does: the √d_k demonstration, the expected values
of the examples, the loss of a random model, the training configuration chosen for the machine, its time
estimate, and one TensorBoard folder per run.

The plain cells are run from the instructor notebook (which tests/test_sync.py keeps equal to the text twin),
with the solution's answers, in this process: each test takes a few seconds at most.
"""

import contextlib
import io
import math
import os
import re

import nbformat
import pytest
import torch

from assignments import PW2
from coursekit import answers, layout, material


def code_cell(nb: nbformat.NotebookNode, marker: str, whole: bool = False) -> str:
    """The source of the one code cell that contains `marker` (that is `marker`, when `whole`), with its IPython
    magics made no-ops."""
    found = [c.source for c in nb.cells
             if c.cell_type == "code" and (c.source.strip() == marker if whole else marker in c.source)]
    assert len(found) == 1, f"{len(found)} code cells contain {marker!r}"
    return re.sub(r"^(\s*)%.*$", r"\1pass", found[0], flags=re.M)


def markdown_after(nb: nbformat.NotebookNode, heading: str) -> str:
    return next(c.source for c in nb.cells if c.cell_type == "markdown" and heading in c.source)


def run(code: str, namespace: dict) -> str:
    """Runs `code` in `namespace`; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    return out.getvalue()


@pytest.fixture(scope="module")
def solved(source_nb) -> dict:
    """The notebook's imports and the solution of every exercise, as a student with every answer right has them."""
    namespace = {"GRADING": False, "OFFLINE": False, "IN_COLAB": False, "device": "cpu", "os": os}
    exec(next(c.source for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "imports"),
         namespace)
    for code in answers.solution_answers(source_nb).values():
        exec(code, namespace)
    return namespace


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


# ---------------------------------------------------------------------------------------------------------
# Why √d_k


def test_the_sqrt_d_k_demonstration_prints_what_its_text_announces(source_nb, solved):
    text = markdown_after(source_nb, "### Why divide by")
    announced = re.search(r"standard deviation of about ([\d.]+) and an average largest weight of about ([\d.]+) "
                          r"without the scaling, against about ([\d.]+) and ([\d.]+) with it", text)
    assert announced, text
    std, largest, scaled_std, scaled_largest = map(float, announced.groups())
    printed = run(code_cell(source_nb, "d_k, n_queries, n_keys = 64"), dict(solved)).splitlines()
    unscaled_line = next(line for line in printed if line.strip().startswith("q·k:"))
    scaled_line = next(line for line in printed if "q·k / √d_k:" in line)
    assert numbers(unscaled_line)[:2] == pytest.approx([std, largest], abs=0.051)
    assert numbers(scaled_line)[:2] == pytest.approx([scaled_std, scaled_largest], abs=0.051)
    # and what the text claims of them: std √d_k = 8 without the scaling, 1 with it; a near one-hot softmax
    assert abs(std - 8) < 0.5 and abs(scaled_std - 1) < 0.1
    assert largest > 0.8 > 0.4 > scaled_largest
    assert "(equal weights over 10 keys would be 0.10 each)" in printed


# ---------------------------------------------------------------------------------------------------------
# Expected values of the examples


EXAMPLES = ["attended_values = self_attention(S, W_Q, W_K, W_V)",
            "attended_values = multi_head_attention(S, W_Q, W_K, W_V, W_O)\n",
            "attended_values = causal_multi_head_attention(S, W_Q, W_K, W_V, W_O)",
            "attended_values = attention_module(S)",
            "output = block(S)"]


def expected_comment(source: str) -> str:
    return next(line for line in source.splitlines() if line.startswith("# Expected: "))


@pytest.mark.parametrize("marker", EXAMPLES)
def test_the_expected_values_of_an_example_are_what_the_solution_prints(source_nb, solved, marker):
    source = code_cell(source_nb, marker)
    assert "device" not in source, "the examples run on the CPU, whatever the machine: everyone gets the same numbers"
    namespace = dict(solved)
    if "attention_module(S)" in source:
        exec(code_cell(source_nb, "attention_module = CausalSelfAttention()"), namespace)
    printed = run(source, namespace)
    comment = expected_comment(source)
    shape = re.search(r"Output Shape: (torch\.Size\(\[[\d, ]+\]\))", comment).group(1)
    assert f"Output Shape: {shape}\n" in printed
    about = re.search(r"about \[([-\d., ]+)\]", comment)
    if about is None:
        assert "No values to compare with here" in comment + source, "an example without numbers says why"
        return
    assert "torch.manual_seed(0)" in source, "seeded inputs, or nobody gets these numbers"
    expected = [float(x) for x in about.group(1).split(",")]
    value_line = next(line for line in printed.splitlines() if "tensor(" in line)
    assert numbers(value_line) == pytest.approx(expected, abs=1e-3), value_line
    assert comment.count("True") == printed.count(": True"), printed


def test_the_expected_values_tell_a_common_mistake_apart(source_nb, solved):
    """Without the scaling, self_attention's example gives other numbers, beyond the tolerance the text states."""
    namespace = dict(solved)

    def unscaled(S, W_Q, W_K, W_V):
        Q, K, V = S @ W_Q, S @ W_K, S @ W_V
        return (Q @ K.transpose(-2, -1)).softmax(dim=-1) @ V

    namespace["self_attention"] = unscaled
    source = code_cell(source_nb, EXAMPLES[0])
    value_line = next(line for line in run(source, namespace).splitlines() if "tensor(" in line)
    expected = [float(x) for x in re.search(r"about \[([-\d., ]+)\]", expected_comment(source)).group(1).split(",")]
    assert max(abs(a - b) for a, b in zip(numbers(value_line), expected, strict=True)) > 0.01


def test_the_transformer_logits_have_the_shape_the_comment_gives(source_nb, solved):
    namespace = dict(solved)
    for marker in ["transformer = Transformer()", "input_ids = torch.randint(0, 100, (1, 3))", "logits = transformer(input_ids)"]:
        exec(code_cell(source_nb, marker, whole=True), namespace)
    comment = re.search(r"expected: (torch\.Size\(\[[\d, ]+\]\))", code_cell(source_nb, "logits.shape  # expected")).group(1)
    assert str(namespace["logits"].shape) == comment


@pytest.mark.parametrize("vocab_size, stated", [(50257, "10.82"), (512, "6.24")])
def test_a_random_model_loses_about_ln_v(source_nb, solved, vocab_size, stated):
    text = markdown_after(source_nb, "**What to expect.**")
    assert f"\\ln {vocab_size} \\approx {stated}" in text
    assert f"{math.log(vocab_size):.2f}" == stated
    margin = float(re.search(r"a little more than that \(about ([\d.]+) more\)", text).group(1))
    for seed in range(2):
        torch.manual_seed(seed)
        model = solved["Transformer"](vocab_size=vocab_size, seq_len=128)  # as in the notebook: its default size
        input_ids = torch.randint(0, vocab_size, (4, 100))
        with torch.no_grad():
            loss = solved["lm_loss"](model(input_ids), input_ids, torch.ones_like(input_ids)).item()
        assert loss - math.log(vocab_size) == pytest.approx(margin, abs=0.15), loss


# ---------------------------------------------------------------------------------------------------------
# The training configuration follows the machine


@pytest.fixture(scope="module")
def configs(source_nb, solved) -> dict:
    namespace = dict(solved)
    run(code_cell(source_nb, "def run_writer"), namespace)  # the cell before (it imports time)
    printed = run(code_cell(source_nb, "def training_config"), namespace)
    exec(code_cell(source_nb, "def seconds_per_step").split("\nif not GRADING:")[0], namespace)
    return {"namespace": namespace, "printed": printed, "cpu": namespace["training_config"]("cpu"),
            "cuda": namespace["training_config"]("cuda"), "cuda:0": namespace["training_config"]("cuda:0"),
            "offline": namespace["training_config"]("cpu", offline=True),
            "offline_gpu": namespace["training_config"]("cuda", offline=True)}


def demo_seconds(configs, name, step_seconds=None):
    config = configs[name]
    return configs["namespace"]["expected_seconds"](step_seconds or config["estimated_seconds_per_step"],
                                                    config["overfit_steps"], config["validate_every"],
                                                    config["validation_batches"])


def test_a_cpu_gets_a_smaller_run_of_minutes_and_says_why(configs):
    cpu, gpu = configs["cpu"], configs["cuda"]
    assert (cpu["name"], gpu["name"], configs["cuda:0"]["name"]) == ("cpu", "gpu", "gpu")
    assert configs["offline"]["name"] == configs["offline_gpu"]["name"] == "offline", "offline: the sample, anywhere"
    assert cpu["model"]["hidden_size"] < gpu["model"]["hidden_size"]
    assert cpu["model"]["num_layers"] <= gpu["model"]["num_layers"] and cpu["model"]["seq_len"] < gpu["model"]["seq_len"]
    assert cpu["overfit_steps"] < gpu["overfit_steps"] and cpu["n_examples"] < gpu["n_examples"]
    assert 20 < demo_seconds(configs, "cpu") < 5 * 60, "the CPU's quick demo takes minutes"
    assert demo_seconds(configs, "cuda") < 5 * 60, "and the GPU's too, on a T4"
    assert demo_seconds(configs, "offline") < 30, "offline (and while graded): seconds"
    gpu_on_a_cpu = demo_seconds(configs, "cuda", step_seconds=5.0)  # 5 to 25 s a step measured on this machine's CPU
    assert gpu_on_a_cpu > 3600, "the reason for a CPU configuration: the GPU one takes hours on a CPU"
    assert configs["printed"] == ('Training configuration "cpu", because there is no GPU: a smaller model (hidden 128, '
                                  "2 layers, seq_len 64), smaller batches and fewer steps, so that training takes minutes "
                                  "(the GPU configuration would take hours on a CPU).\n")
    assert f"hidden {cpu['model']['hidden_size']}, {cpu['model']['num_layers']} layers" in cpu["why"]
    assert f"seq_len {cpu['model']['seq_len']}" in cpu["why"]


def test_the_configurations_table_says_what_the_function_returns(source_nb, configs):
    table = markdown_after(source_nb, "### Which model, on which machine")
    for name, key in [("gpu", "cuda"), ("cpu", "cpu"), ("offline", "offline")]:
        c = configs[key]
        row = next(line for line in table.splitlines() if line.startswith(f'| `"{name}"` |'))
        model = c["model"]
        assert (f"hidden {model['hidden_size']}, {model['num_layers']} layers, {model['num_heads']} heads, "
                f"`seq_len` {model['seq_len']}") in row, row
        assert f"batches of {c['batch_size']}, {c['overfit_steps']:,} steps, lr {c['learning_rate']:.0e}".replace(
            "e-0", "e-") in row, row
    cpu_step = float(re.search(r'a step of the `"cpu"` configuration took about ([\d.]+) s', table).group(1))
    assert cpu_step == configs["cpu"]["estimated_seconds_per_step"]
    t4_step = float(re.search(r"a step takes about ([\d.]+) s", table).group(1))
    assert t4_step == configs["cuda"]["estimated_seconds_per_step"]
    # the T4 estimate's arithmetic: 6 N tokens FLOPs at 30% of 8.1 TFLOP/s
    hidden, layers = configs["cuda"]["model"]["hidden_size"], configs["cuda"]["model"]["num_layers"]
    n = hidden * 50257 + layers * 12 * hidden ** 2
    flops = 6 * n * configs["cuda"]["batch_size"] * configs["cuda"]["model"]["seq_len"]
    assert flops / 1e12 == pytest.approx(0.37, abs=0.01)
    assert flops / (0.3 * 8.1e12) == pytest.approx(t4_step, abs=0.01)
    minutes = float(re.search(r'\| `"cpu"` \|.*\| about ([\d.]+) min on 2 CPU cores', table).group(1))
    assert demo_seconds(configs, "cpu") / 60 == pytest.approx(minutes, rel=0.25)
    # and on busy cores, as a student on a shared or older machine may see it
    busy_step = float(re.search(r"while other jobs ran, a step took up to ([\d.]+) s", table).group(1))
    busy_minutes = float(re.search(r"up to ([\d.]+) min when they are busy", table).group(1))
    assert demo_seconds(configs, "cpu", busy_step) / 60 == pytest.approx(busy_minutes, rel=0.25)
    gpu_minutes = float(re.search(r'\| `"gpu"` \|.*\| about ([\d.]+) min on a Colab T4', table).group(1))
    assert demo_seconds(configs, "cuda") / 60 == pytest.approx(gpu_minutes, rel=0.25)
    offline_seconds = float(re.search(r'\| `"offline"` \|.*\| about (\d+) s on 2 CPU cores', table).group(1))
    assert demo_seconds(configs, "offline") == pytest.approx(offline_seconds, rel=0.25)


def test_the_offline_and_gpu_configurations_are_the_benchmarks(configs):
    """The training benchmark (README, "Training benchmark") measures the seed's run and the notebook's offline one."""
    bench_training = material.module(PW2, "bench_training")
    for key, bench in [("cuda", bench_training.SEED), ("offline", bench_training.NOTEBOOK_OFFLINE)]:
        c = configs[key]
        assert (c["model"]["hidden_size"], c["model"]["num_layers"], c["model"]["num_heads"], c["model"]["seq_len"],
                c["batch_size"], c["learning_rate"]) == (bench.hidden_size, bench.num_layers, bench.num_heads,
                                                         bench.seq_len, bench.batch_size, bench.lr)


def test_a_few_steps_are_timed_before_training(configs):
    namespace = configs["namespace"]
    assert namespace["expected_seconds"](2.0, 50, 25, 6) == pytest.approx(2.0 * (50 + 2 * 6 / 3))
    assert namespace["expected_seconds"](1.0, 30, 10, 3) == pytest.approx(30 + 3 * 3 / 3)
    assert [namespace["in_words"](s) for s in (40, 150, 7200)] == ["40 s", "2 min", "2.0 h"]
    config = dict(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2, dropout=0.0, seq_len=8)
    batch = (torch.randint(0, 40, (2, 8)), torch.ones(2, 8, dtype=torch.long))
    torch.manual_seed(0)
    seconds = namespace["seconds_per_step"](config, 1e-3, [batch], steps=2)
    assert 0 < seconds < 5


def test_the_timing_cell_prints_the_expected_time_outside_grading_only(source_nb):
    source = code_cell(source_nb, "def seconds_per_step")
    assert "\nif not GRADING:" in source
    assert "seconds_per_step(config, learning_rate, train_loader)" in source.split("\nif not GRADING:")[1]


# ---------------------------------------------------------------------------------------------------------
# TensorBoard: one folder per run


def test_each_training_run_writes_to_a_tensorboard_folder_of_its_own(source_nb, solved, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    namespace = {**solved, "GRADING": True}
    run(code_cell(source_nb, "def run_writer"), namespace)
    writers = [namespace["run_writer"]("cpu-overfit_one_batch", root=str(tmp_path)) for _ in range(2)]
    folders = [w.log_dir for w in writers]
    assert folders[0] != folders[1], "two runs, two folders: their curves never merge"
    for i, writer in enumerate(writers):
        assert os.path.dirname(writer.log_dir) == str(tmp_path)
        assert re.fullmatch(r"\d{8}-\d{6}-cpu-overfit_one_batch(-\d+)?", os.path.basename(writer.log_dir))
        writer.add_scalar("loss/train", float(i), 1)
        writer.close()
    assert [EventAccumulator(f).Reload().Scalars("loss/train")[0].value for f in folders] == [0.0, 1.0]
    training = code_cell(source_nb, "history = train(transformer, optimizer")
    assert "writer = run_writer(f\"{run_config['name']}-{TRAINING}\")" in training
    tensorboard = next(c.source for c in source_nb.cells if "def run_writer" in c.source)
    assert "%tensorboard --logdir runs" in tensorboard and 'root="runs"' in tensorboard
    assert not any('SummaryWriter("logs")' in c.source for c in source_nb.cells)


@pytest.mark.parametrize("assignment", layout.assignments(), ids=str)
def test_every_image_says_what_it_shows_when_it_does_not_load(assignment):
    """A figure that fails to load (offline, a blocked host) shows its alt text: it says what the figure shows, in
    words, never a file name or "image"."""
    release = nbformat.read(layout.COURSE.release_notebook(assignment), as_version=4)
    images = [m for c in release.cells if c.cell_type == "markdown" for m in re.findall(r"!\[([^\]]*)\]\(([^)]*)\)", c.source)]
    for alt, address in images:
        words = re.findall(r"[A-Za-z]+", alt)
        assert len(words) >= 3 and not re.search(r"\.(png|jpe?g|gif|svg)$", alt, re.I), (alt, address)


@pytest.mark.parametrize("assignment", layout.assignments(), ids=str)
def test_the_helpers_and_check_cells_show_one_line_and_hide_their_code(assignment):
    """Students see exercises, not engine code: in the release, the helpers cell and every check cell start with a
    Colab form title, and are collapsed in Colab (form view) and in JupyterLab (input hidden); their outputs, the
    lines that say what was checked, stay in view. Exercise cells and the teaching code are never collapsed."""
    release = nbformat.read(layout.COURSE.release_notebook(assignment), as_version=4)
    for cell in release.cells:
        if cell.cell_type != "code":
            continue
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        collapsed = cell.metadata.get("cellView") == "form" and cell.metadata.get("jupyter", {}).get("source_hidden")
        if grade_id == "grading_helpers" or grade_id.startswith("test_"):
            assert collapsed and cell.source.startswith("# @title "), grade_id
            title = cell.source.splitlines()[0]
            assert len(title) < 130 and ("Checks of" in title or "Helpers" in title), title
        else:
            assert not collapsed, (grade_id, cell.source[:60])
