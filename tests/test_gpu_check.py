"""`make gpu-check`: on a CUDA machine, the checks give the CPU's scores; here (no GPU) its dry run, DEVICE=cpu.

The dry run goes through the whole command (both judging passes in subprocesses, the report, the short training
benchmark) with both passes on the CPU, so that the command is known to run before a GPU is lent.
"""

import json
import subprocess
import sys

from assignments import PW2, PW3
from coursekit import catalogue, gpu_check, layout


def test_the_dry_run_judges_the_solution_on_both_passes_and_writes_one_report(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "-m", "coursekit", "gpu-check", "--device", "cpu", "--assignment",
                           PW3.name, "--no-training", "--out", str(out)], cwd=layout.ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    found = report["assignments"][PW3.name]
    assert report["same"] and found["differ"] == []
    for judged in (found["gpu_hidden"], found["on_device"]):
        assert judged["device"] == "cpu"
        assert sum(judged["solution"].values()) == 100 and judged["solution_public_failures"] == {}
    assert "same scores on both devices" in done.stdout


def test_the_entries_about_devices_are_the_mask_that_stays_behind_and_the_right_buffers():
    chosen = {e.name: e for e in gpu_check.device_entries(catalogue.load(PW2))}
    assert "CausalSelfAttention: mask kept as a plain tensor attribute" in chosen
    assert any(e.correct and "register_buffer" in code for e in chosen.values() for code in e.cells.values())
    assert all(not e.correct or "register_buffer" in "".join(e.cells.values()) or ".to(" in "".join(e.cells.values())
               for e in chosen.values())


def test_the_mask_that_stays_behind_loses_its_device_point_on_both_passes():
    name = "CausalSelfAttention: mask kept as a plain tensor attribute"
    judged = gpu_check.judge(PW2, [name])
    assert judged["entries"][name]["CausalSelfAttention"] < judged["solution"]["CausalSelfAttention"]


def test_a_score_that_differs_between_the_devices_fails_the_check(monkeypatch):
    def judged(assignment, hide_gpu, entry_names):
        points = 4.0 if hide_gpu else 3.0  # as if an entry lost a point on the GPU only
        return {"device": "cpu" if hide_gpu else "cuda", "solution": {"decode": 5.0}, "solution_public_failures": {},
                "entries": {"a mask on the wrong device": {"CausalSelfAttention": points}}}

    monkeypatch.setattr(gpu_check, "_judge_in_subprocess", judged)
    report = gpu_check.run("cpu", [PW3], training=False)
    assert not report["same"] and report["assignments"][PW3.name]["differ"] == ["a mask on the wrong device"]
    assert "SCORES DIFFER" in gpu_check.summary(report)


def test_the_short_training_benchmark_runs_on_the_cpu():
    found = gpu_check.training_benchmark("cpu", [PW2])[PW2.name]
    assert found["device"] == "cpu" and found["sdpa_max_logit_difference"] < 1e-3
    assert found["throughput"] and all(run["tokens_per_s"] > 0 for run in found["throughput"])
    assert len(found["overfit"]) == 1


def test_make_gpu_check_runs_on_cuda_unless_told_otherwise():
    def command(*options):
        done = subprocess.run(["make", "-n", "gpu-check", *options], cwd=layout.ROOT, capture_output=True, text=True)
        return " ".join(done.stdout.split())

    default, dry = command(), command("DEVICE=cpu")
    assert "gpu-check --device cuda" in default and "gpu-check --device cpu" in dry
