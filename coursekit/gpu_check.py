"""`make gpu-check`: the checks on a GPU give the scores they give on the CPU, in one command, with its figures in JSON.

On a CUDA machine (`DEVICE=cuda`, under 10 minutes), for every assignment:
- the solution judged by the hidden checks (every test cell in probe mode, judged by the grader on drawn inputs, in this
  machine's Python: coursekit/draws.py) and run through the public checks (as in Colab), once with the GPU hidden
  (CUDA_VISIBLE_DEVICES="") and once with it: the notebooks' `device` cell picks it, and every check runs there;
- the catalogue's entries about devices (device_entries: wrong answers told about a device or a buffer, such as a mask
  that does not follow the module; right answers that keep buffers or move tensors), each judged on both;
- the training benchmark of the assignments that have one (source_text/<assignment>/bench_training.py), short.
Both passes run in subprocesses of their own, so that the GPU can be hidden from one. The report says, per assignment
and entry, the points on each device and whether they are the same; the command fails when one differs.
`DEVICE=cpu` is a dry run of the whole command on a machine without a GPU (both passes on the CPU): the tests run it.
"""

import json
import os
import re
import subprocess
import sys
import time

from . import layout

# The catalogue's entries about devices: wrong answers whose message must name a device, a buffer or the GPU (a mask
# that does not follow the module), and right answers that keep buffers or move tensors themselves.
WRONG_ABOUT_DEVICES = re.compile(r"device|buffer|GPU")
RIGHT_ABOUT_DEVICES = re.compile(r"register_buffer|\.to\(|\.cuda\b")


def device_entries(entries: list) -> list:
    return [e for e in entries if (WRONG_ABOUT_DEVICES.search(e.expect) if not e.correct else
                                   any(RIGHT_ABOUT_DEVICES.search(code) for code in e.cells.values()))]


def judge(assignment: layout.Assignment, entry_names: list[str] | None = None) -> dict:
    """In this process, on the device the notebook picks: the solution's points per exercise (hidden checks) and the
    public checks it fails, the device the checks ran on, and the points of the catalogue entries `entry_names`
    (default: those about devices)."""
    import nbformat

    from . import answers, catalogue, draws, material

    course = layout.COURSE
    source = nbformat.read(course.source_notebook(assignment), as_version=4)
    release = nbformat.read(course.release_notebook(assignment), as_version=4)
    solutions = answers.solution_answers(source)
    exercises = {grade_id: solutions[grade_id] for grade_id in answers.exercise_ids(source)}
    start = time.perf_counter()
    kernel = draws.kernel_namespace(source, exercises)
    judged = draws.judge(source, exercises, 1, kernel)
    public = catalogue.public_failures({}, release, solutions)
    found = {"device": str(kernel.get("DEVICE", kernel.get("device", "cpu"))),  # what the notebook's device cell chose
             "solution": {e: points for e, counts in judged.points.items() for points in counts},
             "solution_public_failures": {e: [str(c) for c in failed] for e, failed in public.items() if failed},
             "entries": {}}
    if material.has(assignment, "catalogue"):
        entries = catalogue.load(assignment)
        chosen = [e for e in entries if e.name in entry_names] if entry_names is not None else device_entries(entries)
        for entry in chosen:
            points = draws.judge(source, entry.cells, 1).points
            found["entries"][entry.name] = {e: p for e, counts in points.items() for p in counts}
    found["seconds"] = round(time.perf_counter() - start, 1)
    return found


def _judge_in_subprocess(assignment: layout.Assignment, hide_gpu: bool, entry_names: list[str] | None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(layout.ROOT)}
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, "-m", "coursekit.gpu_check", assignment.name, *(["--entries", *entry_names]
                                                                            if entry_names is not None else [])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=layout.ROOT, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"judging {assignment.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(device: str = "cuda", assignments: list[layout.Assignment] | None = None, entry_names: list[str] | None = None,
        training: bool = True) -> dict:
    """The whole check (see the module's docstring): one JSON-able report, with "same": whether every score on `device`
    equals the CPU's."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda, but torch sees no GPU here (DEVICE=cpu runs the check as a dry run)")
    start = time.perf_counter()
    report = {"device": device, "machine": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "assignments": {}}
    for assignment in assignments or layout.COURSE.assignments():
        cpu = _judge_in_subprocess(assignment, True, entry_names)
        on_device = _judge_in_subprocess(assignment, False, entry_names)
        differ = [name for name in ["solution", *on_device["entries"]] if
                  (cpu[name] if name == "solution" else cpu["entries"].get(name)) !=
                  (on_device[name] if name == "solution" else on_device["entries"][name])]
        if cpu["solution_public_failures"] != on_device["solution_public_failures"]:
            differ.append("solution's public checks")
        report["assignments"][assignment.name] = {"gpu_hidden": cpu, "on_device": on_device, "differ": differ}
    if training:
        report["training"] = training_benchmark(device, assignments)
    report["same"] = not any(a["differ"] for a in report["assignments"].values())
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def training_benchmark(device: str, assignments: list[layout.Assignment] | None) -> dict:
    """The training benchmark of each assignment that has one, short: on a GPU 20 timed steps and overfitting up to
    2 minutes; on the CPU (dry run) the notebook's offline configuration, 1 step and 2 overfitting steps."""
    from . import material

    found = {}
    for assignment in assignments or layout.COURSE.assignments():
        if not material.has(assignment, "bench_training"):
            continue
        bench = material.module(assignment, "bench_training")
        if device.startswith("cuda"):
            options = {"steps": 20, "warmup": 3, "overfit_steps": 2000, "overfit_seconds": 120.0}
        else:
            options = {"steps": 1, "warmup": 0, "overfit_steps": 2, "overfit_seconds": 30.0,
                       "config": bench.NOTEBOOK_OFFLINE, "offline_config": None}
        found[assignment.name] = bench.run(device, log=lambda line: print(line, file=sys.stderr), **options)
    return found


def summary(report: dict) -> str:
    lines = [f"gpu-check on {report['device']} ({report['machine']}, torch {report['torch']}), {report['seconds']} s"]
    for name, found in report["assignments"].items():
        on_device = found["on_device"]
        points, hidden = (sum(found[key]["solution"].values()) for key in ("on_device", "gpu_hidden"))
        lines.append(f"  {name}: checks ran on {on_device['device']}; solution {points:g} points ({hidden:g} with the "
                     f"GPU hidden); {len(on_device['entries'])} device entries of the catalogue; "
                     + (f"DIFFER: {', '.join(found['differ'])}" if found["differ"] else "same scores"))
    for name, bench in report.get("training", {}).items():
        best = max(bench["throughput"], key=lambda r: r["tokens_per_s"])
        lines.append(f"  {name} training: fastest variant {best['variant']}, {best['tokens_per_s']:,.0f} tokens/s, "
                     f"{best['seconds_per_step']:.3f} s a step")
    lines.append("same scores on both devices" if report["same"] else "SCORES DIFFER between the devices")
    return "\n".join(lines)


if __name__ == "__main__":  # one judging pass, as a subprocess of run(): its JSON on the last line of stdout
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("assignment")
    parser.add_argument("--entries", nargs="*")
    args = parser.parse_args()
    print(json.dumps(judge(layout.Assignment(args.assignment), args.entries)))
