"""The student's online path, as in Colab: the release notebook with the solution filled in, opened without its
data/ folder (as Colab opens it from GitHub), run top to bottom with `jupyter nbconvert --execute`, with a
stand-in `google.colab` module imported in the kernel, and no GPU.

a. The Hugging Face Hub is a stand-in (tests/hub_stand_in.py) that serves tiny look-alikes of WikiText-103,
   GPT-2's tokenizer and BERT: the notebook downloads them, trains the "cpu" configuration, and runs the bonus.
b. The Hub can't be reached (HF_ENDPOINT points at a port where nothing listens): the notebook falls back on the
   sample embedded in its load_data cell, its own small tokenizer, and skips the bonus. It asks the Hub once, not
   for the 25 s of retries load_dataset would take.
c. Only GPT-2's tokenizer fails to download (the Hub fails between two cells): the data and tokenizer cells carry on
   offline together.

Nothing here reaches the real Hub: HF_ENDPOINT points at 127.0.0.1, and any other HTTP(S) request goes to a proxy
where nothing listens. The TensorBoard server that `%tensorboard` starts in Colab mode, like any other process the
run leaves behind, is ended after each run.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from coursekit import answers, layout
from assignments import PW2
from hub_stand_in import StandInHub, build_repositories
from test_student_notebook import EXERCISES, all_text, cell, errors, outputs

# A stand-in for Colab's `google.colab` package: what the notebook's libraries use of it. `google` stays a namespace
# package (no google/__init__.py), so that google.protobuf, which TensorBoard needs, still imports.
GOOGLE_COLAB = {
    "__init__.py": '"""A stand-in for Colab\'s google.colab (tests/test_online_path.py)."""\n'
                   "from . import errors, userdata  # noqa: F401\n",
    # tensorboard's `%tensorboard` only checks that google.colab imports, then displays its Colab frame (JavaScript).
    # huggingface_hub asks userdata for the HF_TOKEN secret in Colab: a student who has not set one.
    "errors.py": "class Error(Exception):\n    pass\n",
    "userdata.py": "class SecretNotFoundError(Exception):\n    pass\n\n\n"
                   "class NotebookAccessError(Exception):\n    pass\n\n\n"
                   "def get(key):\n    raise SecretNotFoundError(key)\n",
    # Colab's shell is google.colab._shell.Shell, which huggingface_hub's is_google_colab() recognizes by its name.
    "_shell.py": "from ipykernel.zmqshell import ZMQInteractiveShell\n\n\n"
                 "class Shell(ZMQInteractiveShell):\n    pass\n",
}
# Run by the kernel before the first cell (an IPython startup file), as Colab's runtime has imported google.colab.
STARTUP = ("import google.colab\nfrom google.colab import _shell\n\n"
           "get_ipython().__class__ = _shell.Shell\n")

WIKITEXT_FALLBACK = "using a small sample of WikiText"
BONUS_SKIPPED_OFFLINE = "Bonus skipped: it downloads BERT from the Hugging Face Hub, which can't be reached here."


def colab(root: Path) -> dict[str, str]:
    """The environment variables that make a kernel look like Colab's: google.colab on PYTHONPATH, and imported at
    startup (IPYTHONDIR), in `root`."""
    package = root / "packages" / "google" / "colab"
    package.mkdir(parents=True)
    for name, text in GOOGLE_COLAB.items():
        (package / name).write_text(text)
    startup = root / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-google-colab.py").write_text(STARTUP)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(root / "packages"), os.environ.get("PYTHONPATH")])),
            "IPYTHONDIR": str(root / "ipython")}


SAMPLE = layout.COURSE.source_notebook(PW2).parent / "data" / "wikitext_sample.json"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with StandInHub(build_repositories(SAMPLE, tmp_path_factory.mktemp("repositories"))) as hub:
        yield hub


@pytest.fixture(scope="module")
def dead_port():
    """A port of 127.0.0.1 where nothing listens (bound, never listening: connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def student_notebook(source_nb, release_nb) -> nbformat.NotebookNode:
    """The release notebook, with the solution in its exercise cells."""
    return answers.fill(release_nb, answers.solution_answers(source_nb))


def processes_with(marker: str) -> dict[int, str]:
    """The processes (pid: command line) whose environment holds `marker`: the ones a run started."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker.encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:  # gone, or not ours
                pass
    return found


def end(pids) -> None:
    """Ends these processes by their ids: SIGTERM, then SIGKILL for those still there after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)


class Run:
    """A run of the notebook in Colab: the executed notebook, its folder, and the processes it left running."""

    def __init__(self, nb, folder, left_running):
        self.nb, self.folder, self.left_running = nb, folder, left_running
        self.text = all_text(nb)


def run_in_colab(nb, folder: Path, endpoint: str, dead_port: int) -> Run:
    """Runs `nb` alone in `folder` (no data/ beside it) with plain `jupyter nbconvert --execute`, as a student in
    Colab: online (no HF_HUB_OFFLINE), outside grading, without GPU, on the Hub at `endpoint`. The run's caches and
    temporary files go beside `folder`.

    The kernel gets one torch thread (OMP_NUM_THREADS=1): on a machine whose 2 cores are busy with other work, torch's
    default of one thread per core made a training step 30 times slower (1.1 s instead of 0.04 s)."""
    folder.mkdir()
    nbformat.write(nb, folder / PW2.notebook)
    marker = f"COURSEKIT_ONLINE_PATH_RUN={uuid.uuid4().hex}"
    env = colab_environment(folder.parent, endpoint, dead_port, marker)
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--output", "executed.ipynb",
               "--ExecutePreprocessor.timeout=300", PW2.notebook]
    try:
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    finally:
        left_running = processes_with(marker)
        end(left_running)
    assert done.returncode == 0, done.stderr[-3000:]
    assert processes_with(marker) == {}, "a process the run started is still running"
    return Run(nbformat.read(folder / "executed.ipynb", as_version=4), folder, left_running)


def colab_environment(beside: Path, endpoint: str, dead_port: int, marker: str) -> dict[str, str]:
    """The environment of a run as in Colab (see run_in_colab), its caches and temporary files in `beside`."""
    dead_proxy = f"http://127.0.0.1:{dead_port}"  # for any request to another host than 127.0.0.1
    env = {key: value for key, value in os.environ.items()
           if key != "NBGRADER_EXECUTION" and not key.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(colab(beside / "colab"), HF_ENDPOINT=endpoint, HF_HOME=str(beside / "hf"),
               HF_HUB_CACHE=str(beside / "hf" / "hub"), HF_DATASETS_CACHE=str(beside / "hf" / "datasets"),
               HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="10", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
               TMPDIR=str(beside), **dict([marker.split("=", 1)]))
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]:
        env[proxy] = env[proxy.lower()] = dead_proxy
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@pytest.fixture(scope="module")
def runs(request, student_notebook, dead_port, tmp_path_factory) -> dict[str, Run]:
    """Both runs, side by side. With the Hub down, the run spends about 23 s waiting between huggingface_hub's retries:
    it starts first, and the stand-in Hub is built meanwhile."""
    folders = {name: tmp_path_factory.mktemp(name) / "notebook" for name in ["online", "hub_down"]}
    with ThreadPoolExecutor(2) as pool:
        hub_down = pool.submit(run_in_colab, student_notebook, folders["hub_down"], f"http://127.0.0.1:{dead_port}",
                               dead_port)
        hub = request.getfixturevalue("hub")
        online = pool.submit(run_in_colab, student_notebook, folders["online"], hub.url, dead_port)
        return {"online": online.result(), "hub_down": hub_down.result()}


@pytest.fixture(scope="module")
def online(runs) -> Run:
    return runs["online"]


@pytest.fixture(scope="module")
def hub_down(runs) -> Run:
    return runs["hub_down"]


def result(nb, grade_id: str) -> str:
    """What a cell's last expression showed (text/plain)."""
    return next(o.data["text/plain"] for o in cell(nb, grade_id).outputs if o.output_type == "execute_result")


def assert_dataset_is_the_sample(run: Run):
    splits = json.loads(SAMPLE.read_text(encoding="utf-8"))
    shown = result(run.nb, "load_data")
    for split, lines in splits.items():
        assert re.search(rf"{split}: Dataset\(\{{\s*features: \['text'\],\s*num_rows: {len(lines)}\s*\}}\)", shown), shown
    assert result(run.nb, "demo_dataset_example") == repr(splits["train"][3])


def assert_tensorboard_ran_in_colab_mode(run: Run):
    """%tensorboard started a TensorBoard server (it logs to $TMPDIR), and displayed it in Colab's frame; the server
    ended with the run (jupyter_client ends the kernel's process group when the kernel shuts down)."""
    scripts = [o.data["application/javascript"] for o in cell(run.nb, "demo_tensorboard").outputs
               if "application/javascript" in o.get("data", {})]
    frame = re.search(r"google\.colab\.kernel\.proxyPort\((\d+)", scripts[-1] if scripts else "")
    assert frame, cell(run.nb, "demo_tensorboard").outputs
    logs = "".join(log.read_text() for log in run.folder.parent.glob(".tensorboard-stderr-*"))
    served = re.search(r"TensorBoard [\d.]+ at http://localhost:(\d+)/", logs)
    assert served and served.group(1) == frame.group(1), logs
    assert not any("tensorboard" in command for command in run.left_running.values()), run.left_running


# ---------------------------------------------------------------------------------------------------------
# a. The Hub serves the repositories


def test_online_the_notebook_runs_to_the_end_in_colab_mode(online):
    assert errors(online.nb) == []
    assert not (online.folder / "data").exists(), "opened from GitHub: no data/ folder beside the notebook"
    assert outputs(online.nb, "install") == "", "in Colab, with every library there, nothing to install or say"
    assert "No GPU found: running on the CPU instead." in outputs(online.nb, "device")
    assert_tensorboard_ran_in_colab_mode(online)


def test_online_the_notebook_downloads_wikitext(online, hub):
    printed = outputs(online.nb, "load_data")
    assert WIKITEXT_FALLBACK not in printed and "Could not download" not in printed, printed
    assert_dataset_is_the_sample(online)  # the stand-in serves the sample's lines
    assert {("Salesforce/wikitext", f"wikitext-103-raw-v1/{split}-00000-of-00001.parquet")
            for split in ["train", "validation", "test"]} <= hub.downloaded()


def test_online_the_tokenizer_is_gpt2s_from_the_hub(online, hub):
    vocab_size = len(json.loads(hub.repository("openai-community/gpt2").files["vocab.json"]))
    assert vocab_size != 512, "the served tokenizer must not be mistaken for the offline one"
    assert f"ln V = ln {vocab_size} = " in outputs(online.nb, "demo_random_model_loss")
    assert "Offline" not in online.text
    assert result(online.nb, "demo_eos_token_id") == str(vocab_size - 1), "<|endoftext|> is GPT-2's last token"
    assert ("openai-community/gpt2", "tokenizer.json") in hub.downloaded()


def test_online_without_gpu_the_cpu_configuration_trains(online):
    text = online.text
    assert 'Training configuration "cpu", because there is no GPU' in text
    assert "overfit_one_batch: 8 training blocks of up to 64 tokens, 50 steps" in text
    assert re.search(r"TensorBoard: this run writes to runs/\d{8}-\d{6}-cpu-overfit_one_batch\n", text)
    losses = [float(x) for x in re.findall(r"step (?:25|50): train loss ([\d.]+)", text)]
    assert len(losses) == 2 and losses[-1] < losses[0], losses
    assert "The model loaded from transformer.pt generates the same text: True" in text
    assert list((online.folder / "runs").glob("*-cpu-overfit_one_batch/events.out.tfevents.*"))


def test_online_the_bonus_runs_on_the_hubs_bert(online, hub):
    printed = outputs(online.nb, "demo_bonus_bert")
    assert "Bonus skipped" not in online.text
    assert printed.splitlines() == ["['[CLS]', 'i', 'will', 'go', 'for', 'a', 'run', 'and', 'will', 'jump', 'into', 'a', "
                                    "'lake', '.', '[SEP]']", "torch.Size([1, 2, 15, 15])"], printed
    drawn = [o.data for o in cell(online.nb, "demo_bonus_bertviz").outputs if o.output_type == "display_data"]
    assert any("bertviz" in str(data.get("text/html", "")) or "bertviz" in str(data.get("application/javascript", ""))
               for data in drawn), "bertviz's head_view drew the attentions"
    assert {("google-bert/bert-base-uncased", name) for name in ["config.json", "model.safetensors", "vocab.txt"]} \
        <= hub.downloaded()


def test_online_the_hub_saw_only_requests_it_serves(online, hub):
    """Every request was for an API or a file of the stand-in: a 404 only for an optional file (EntryNotFound)."""
    asked = "\n".join(map(str, hub.requests))
    assert hub.unknown() == [], f"paths the stand-in does not serve:\n{asked}"
    assert all(request.status < 500 for request in hub.requests), asked
    assert {request.error_code for request in hub.requests} <= {None, "EntryNotFound"}, asked
    for expected in [r"GET /api/datasets/Salesforce/wikitext/revision/[0-9a-f]{40}",
                     r"HEAD /datasets/Salesforce/wikitext/resolve/\w+/README\.md",
                     r"GET /api/datasets/Salesforce/wikitext/tree/[0-9a-f]{40}/wikitext-103-raw-v1\?",
                     r"GET /api/models/openai-community/gpt2",
                     r"HEAD /bert-base-uncased/resolve/\w+/config\.json -> 307",  # renamed: google-bert/bert-base-uncased
                     r"GET /lfs/[0-9a-f]{64} -> 200 \(cdn\)"]:
        assert re.search(expected, asked), f"{expected} not in:\n{asked}"


# ---------------------------------------------------------------------------------------------------------
# b. The Hub can't be reached


def test_hub_down_the_notebook_runs_to_the_end_on_what_it_embeds(hub_down):
    assert errors(hub_down.nb) == []
    assert not (hub_down.folder / "data").exists()
    assert_tensorboard_ran_in_colab_mode(hub_down)
    printed = outputs(hub_down.nb, "load_data").strip().splitlines()
    assert len(printed) == 1 and re.fullmatch(r"Could not download WikiText-103 \(\w+\): using a small sample of WikiText "
                                              r"\(the copy embedded in the notebook\) instead\.", printed[0]), printed
    assert_dataset_is_the_sample(hub_down)  # the copy embedded in load_data: there is no data/ folder
    assert "Retrying" not in outputs(hub_down.nb, "load_data", "stderr"), "the Hub is asked once, not for 25 s"
    assert "Offline: using a BPE tokenizer of 512 tokens trained on the local sample instead of GPT-2's." in hub_down.text
    assert "ln V = ln 512 = " in outputs(hub_down.nb, "demo_random_model_loss")
    assert 'Training configuration "offline", because the notebook runs offline' in hub_down.text
    assert outputs(hub_down.nb, "demo_bonus_bert").strip() == BONUS_SKIPPED_OFFLINE
    assert cell(hub_down.nb, "demo_bonus_bertviz").outputs == []


# ---------------------------------------------------------------------------------------------------------
# Both


def test_check_my_work_prints_the_same_public_results_online_and_with_the_hub_down(online, hub_down):
    report = outputs(online.nb, "check_my_work")
    for exercise in EXERCISES:
        match = re.search(rf"^  ✓ {exercise}: (\d+)/(\d+) public checks passed", report, re.M)
        assert match and match.group(1) == match.group(2), f"{exercise}:\n{report}"
    assert f"{len(EXERCISES)}/{len(EXERCISES)} exercises pass their public checks" in report
    assert outputs(online.nb, "check_my_work", "stderr") == outputs(hub_down.nb, "check_my_work", "stderr") == ""
    assert outputs(hub_down.nb, "check_my_work") == report


# The Hub fails between the data cell and the tokenizer cell: WikiText came, GPT-2's tokenizer doesn't.

DATA_AND_TOKENIZER = """
import json, sys
import nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
namespace = {"GRADING": False, "OFFLINE": False}
for grade_id in ("load_data", "load_tokenizer"):
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    exec(compile(cell.source, grade_id, "exec"), namespace)
print(json.dumps({"OFFLINE": namespace["OFFLINE"], "vocabulary": len(namespace["tokenizer"]),
                  "train": list(namespace["dataset"]["train"]["text"])}))
"""


def test_when_only_the_tokenizer_fails_to_download_the_notebook_carries_on_offline(tmp_path, dead_port, release_nb):
    """Without the fallback, "Run all" stopped at the tokenizer cell (OSError); with it, the notebook carries on with
    the sample and its own tokenizer, not with WikiText-103 and a tokenizer trained on all of it."""
    with StandInHub([r for r in build_repositories(SAMPLE, tmp_path / "repositories") if r.kind == "dataset"]) as hub:
        script = tmp_path / "cells.py"
        script.write_text(DATA_AND_TOKENIZER)
        nbformat.write(release_nb, tmp_path / PW2.notebook)
        env = colab_environment(tmp_path, hub.url, dead_port, f"COURSEKIT_ONLINE_PATH_RUN={uuid.uuid4().hex}")
        done = subprocess.run([sys.executable, str(script), PW2.notebook], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert ("Salesforce/wikitext" in " ".join(map(str, hub.requests))
                and "openai-community/gpt2" in " ".join(map(str, hub.requests))), "both were asked for"
    printed, found = done.stdout.strip().splitlines()[:-1], json.loads(done.stdout.strip().splitlines()[-1])
    assert re.fullmatch(r"Could not download GPT-2's tokenizer \(\w+\): using a small sample of WikiText \(the copy "
                        r"embedded in the notebook\) and a tokenizer trained on it instead\.", printed[0]), printed
    assert found["OFFLINE"] is True and found["vocabulary"] == 512
    assert found["train"] == json.loads(SAMPLE.read_text())["train"]
