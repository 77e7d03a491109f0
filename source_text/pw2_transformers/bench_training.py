"""pw2's benchmark: training throughput and time to overfit one batch of the reference model (`make bench-training`).

The model, loss and training step are the instructor notebook's solution code, executed as it stands. Three
variants are timed at the seed's configuration (hidden 256, 3 layers, 4 heads, seq_len 128, batch 32): the
reference solution on pre-tokenized batches, the same model with F.scaled_dot_product_attention, and the
seed's loop that tokenizes the raw texts at every step (taking turns, step by step). Then the reference
solution overfits one batch, at the seed's configuration and at the notebook's offline one.
Offline there is no GPT-2 tokenizer: the notebook's own grading-mode tokenizer (a small BPE trained on the
local sample) is used, but the embedding and LM head keep GPT-2's 50257 tokens, so that the cost of a step
is the notebook's. Numbers go in the README, not in tests.
"""

import contextlib
import io
import json
import math
import os
import platform
import time
import types
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from coursekit import answers, layout

ASSIGNMENT = layout.Assignment("pw2_transformers")

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: the Hub is never needed here

GPT2_VOCAB = 50257


@dataclass(frozen=True)
class Config:
    """The seed notebook's training run: `Transformer(hidden_size=256, num_layers=3, num_heads=4, dropout=0.1,
    seq_len=128)`, AdamW at lr 1e-4, batches of 32 texts, GPT-2's vocabulary."""
    hidden_size: int = 256
    num_layers: int = 3
    num_heads: int = 4
    dropout: float = 0.1
    seq_len: int = 128
    batch_size: int = 32
    vocab_size: int = GPT2_VOCAB
    lr: float = 1e-4


SEED = Config()
# The notebook's own run offline and while it is graded (its `if OFFLINE:` branch), vocabulary: its tokenizer's.
NOTEBOOK_OFFLINE = Config(hidden_size=64, num_layers=2, num_heads=4, seq_len=64, batch_size=8, vocab_size=512, lr=3e-3)
TINY = Config(hidden_size=32, num_layers=1, num_heads=2, seq_len=16, batch_size=4, vocab_size=600, lr=3e-3)


def _cells(nb: nbformat.NotebookNode) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if "nbgrader" in c.metadata}


def reference_namespace(nb: nbformat.NotebookNode | None = None) -> dict:
    """A namespace holding the notebook's imports and the solution of every exercise (Transformer, lm_loss,
    train_step, ...), executed from the instructor notebook in notebook order."""
    nb = nb if nb is not None else nbformat.read(layout.COURSE.source_notebook(ASSIGNMENT), as_version=4)
    namespace: dict = {"__name__": "pw2_transformers_reference"}
    exec(compile(_cells(nb)["imports"], "<notebook: imports>", "exec"), namespace)
    for grade_id, code in answers.solution_answers(nb).items():
        exec(compile(code, f"<notebook: {grade_id}>", "exec"), namespace)
    return namespace


def _sdpa_forward(self, x):
    """The solution's CausalSelfAttention.forward with its attention computed by F.scaled_dot_product_attention:
    same projections, same dropouts."""
    F = self._F
    B, T, C = x.shape
    Q, K, V = (p(x).view(B, T, self.num_heads, -1).transpose(1, 2) for p in (self.query, self.key, self.value))
    dropout = self.attention_dropout.p if self.training else 0.0
    merged = F.scaled_dot_product_attention(Q, K, V, dropout_p=dropout, is_causal=True).transpose(1, 2).reshape(B, T, C)
    return self.output_dropout(self.output(merged))


def use_sdpa(model, namespace: dict) -> int:
    """Replaces the forward of every CausalSelfAttention of `model` by `_sdpa_forward`; returns how many."""
    modules = [m for m in model.modules() if isinstance(m, namespace["CausalSelfAttention"])]
    for module in modules:
        missing = [a for a in ("query", "key", "value", "output", "attention_dropout", "output_dropout", "num_heads")
                   if not hasattr(module, a)]
        if missing:
            raise AttributeError(f"the solution's CausalSelfAttention has no {missing}: update _sdpa_forward")
        module._F = namespace["F"]
        module.forward = types.MethodType(_sdpa_forward, module)
    if not modules:
        raise ValueError("no CausalSelfAttention in the model")
    return len(modules)


def build_model(namespace: dict, config: Config, device: str = "cpu", sdpa: bool = False, seed: int = 0):
    namespace["torch"].manual_seed(seed)
    model = namespace["Transformer"](vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                                     num_heads=config.num_heads, dropout=config.dropout, seq_len=config.seq_len,
                                     num_layers=config.num_layers).to(device)
    if sdpa:
        use_sdpa(model, namespace)
    return model


def sdpa_difference(namespace: dict, config: Config, device: str = "cpu") -> float:
    """The largest absolute difference between the logits of the reference model and of its SDPA variant
    (same weights, eval mode, float32), on a random batch of full length."""
    torch = namespace["torch"]
    reference, variant = (build_model(namespace, config, device, sdpa=s).eval() for s in (False, True))
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, config.vocab_size, (2, config.seq_len), generator=generator).to(device)
    with torch.no_grad():
        return (reference(input_ids) - variant(input_ids)).abs().max().item()


def load_data_and_tokenizer(nb: nbformat.NotebookNode | None = None) -> tuple[dict, object, str]:
    """The notebook's offline data (its local WikiText sample) and tokenizer, by running its `load_data` and
    `load_tokenizer` cells: GPT-2's tokenizer if it is in the Hugging Face cache, else the small BPE that the
    notebook trains on the sample in grading mode. Returns (dataset, tokenizer, a description)."""
    nb = nb if nb is not None else nbformat.read(layout.COURSE.source_notebook(ASSIGNMENT), as_version=4)
    cells = _cells(nb)
    namespace: dict = {"OFFLINE": True, "GRADING": False}

    def execute(grade_id):
        exec(compile(cells[grade_id], f"<notebook: {grade_id}>", "exec"), namespace)

    with contextlib.chdir(layout.COURSE.source_notebook(ASSIGNMENT).parent), contextlib.redirect_stdout(io.StringIO()):
        execute("load_data")
        namespace["OFFLINE"] = False
        try:
            execute("load_tokenizer")
            description = "GPT-2's (from the Hugging Face cache)"
        except OSError:  # not in the cache, and the Hub is offline
            namespace["OFFLINE"] = True
            execute("load_tokenizer")
            description = f"the notebook's offline BPE of {len(namespace['tokenizer'])} tokens trained on the local sample"
    return namespace["dataset"], namespace["tokenizer"], description


class _Trainer:
    """One optimizer and one step function for a model: the notebook's `train_step` in float32; on CUDA with
    `amp`, the same step (zero_grad, lm_loss, backward, clipping at 1.0, update) under fp16 autocast with a
    GradScaler."""

    def __init__(self, namespace: dict, model, config: Config, device: str, amp: bool):
        self.ns, self.model, self.device, self.amp = namespace, model, device, amp
        torch = namespace["torch"]
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
        self.scaler = torch.amp.GradScaler("cuda") if amp else None

    def step(self, input_ids, attention_mask) -> float:
        if not self.amp:
            return self.ns["train_step"](self.model, self.optimizer, input_ids, attention_mask)
        torch, nn = self.ns["torch"], self.ns["nn"]
        self.optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = self.ns["lm_loss"](self.model(input_ids), input_ids, attention_mask)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()

    def sync(self):
        if self.device.startswith("cuda"):
            self.ns["torch"].cuda.synchronize()


def _batches(namespace, tokenizer, texts, config: Config, device: str, per_step: bool):
    """Endless (input_ids, attention_mask) batches of `texts`: tokenized at every step from a shuffling DataLoader
    of raw texts, as in the seed's loop, or tokenized once and reused."""
    torch = namespace["torch"]
    if not isinstance(texts, list):  # a `datasets` split, as the notebook loads it: its "text" column
        texts = list(texts["text"])

    def tokenize(text_batch):
        batch = tokenizer(list(text_batch), return_tensors="pt", padding=True, truncation=True, max_length=config.seq_len)
        return batch["input_ids"].to(device), batch["attention_mask"].to(device)

    if not per_step:
        fixed = tokenize(texts[:config.batch_size])
        while True:
            yield fixed
    loader = torch.utils.data.DataLoader(texts[:config.batch_size], batch_size=config.batch_size, shuffle=True)
    while True:
        for text_batch in loader:
            yield tokenize(text_batch)


def throughput(namespace, tokenizer, texts, config: Config, device: str, steps: int, warmup: int,
               variants: dict[str, dict], amp: bool = False) -> list[dict]:
    """Trains a fresh model per variant (options: `sdpa`, `per_step_tokenization`) for `warmup` + `steps` steps,
    the variants taking turns step by step so that a change in the machine's load hits them all alike.
    tokens/s = tokens of a variant's timed steps / the wall-clock time of those steps; CPU time is also kept
    (the process's, all threads), which depends less on other jobs sharing the CPU."""
    runs = [(name, _Trainer(namespace, build_model(namespace, config, device, sdpa=options.get("sdpa", False)).train(),
                            config, device, amp),
             _batches(namespace, tokenizer, texts, config, device, options.get("per_step_tokenization", False)))
            for name, options in variants.items()]
    totals = {name: {"seconds": 0.0, "cpu_seconds": 0.0, "tokens": 0, "loss": math.nan, "shape": None} for name in variants}
    for step in range(warmup + steps):
        for name, trainer, batches in runs:
            trainer.sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            input_ids, attention_mask = next(batches)  # tokenization, in the seed's loop, is part of the timed step
            loss = trainer.step(input_ids, attention_mask)
            trainer.sync()
            if step >= warmup:
                total = totals[name]
                total["seconds"] += time.perf_counter() - start
                total["cpu_seconds"] += time.process_time() - cpu_start
                total["tokens"] += input_ids.numel()
                total["loss"], total["shape"] = loss, list(input_ids.shape)
    return [{"variant": name, "steps": steps, "warmup_steps": warmup, "batch_shape": t["shape"], "seconds": t["seconds"],
             "seconds_per_step": t["seconds"] / steps, "tokens_per_s": t["tokens"] / t["seconds"],
             "cpu_seconds_per_step": t["cpu_seconds"] / steps, "last_loss": t["loss"]} for name, t in totals.items()]


def overfit(namespace, tokenizer, texts, config: Config, device: str, max_steps: int, max_seconds: float = math.inf,
            target: float = 0.5, amp: bool = False) -> dict:
    """Steps and seconds until the training loss of one fixed batch (the first `batch_size` texts, as in the seed)
    falls below `target`, or until `max_steps` or `max_seconds` run out; the loss is the one `train_step` returns
    (before the update, dropout on)."""
    trainer = _Trainer(namespace, build_model(namespace, config, device).train(), config, device, amp)
    input_ids, attention_mask = next(_batches(namespace, tokenizer, texts, config, device, per_step=False))
    trainer.sync()
    start, loss, steps = time.perf_counter(), math.inf, 0
    first = None
    while steps < max_steps and loss >= target and time.perf_counter() - start < max_seconds:
        loss = trainer.step(input_ids, attention_mask)
        first = loss if first is None else first
        steps += 1
    trainer.sync()
    return {"target_loss": target, "reached": loss < target, "steps": steps, "max_steps": max_steps, "max_seconds": max_seconds,
            "seconds": time.perf_counter() - start, "first_loss": first, "final_loss": loss,
            "real_target_tokens": int(attention_mask[:, 1:].sum())}


def _machine(device: str, torch) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()}-core CPU ({model}), torch threads {torch.get_num_threads()}"


VARIANTS = {"reference solution, pre-tokenized batches": {},
            "same model, F.scaled_dot_product_attention": {"sdpa": True},
            "reference solution, seed's per-step tokenization": {"per_step_tokenization": True}}


def run(device: str = "cpu", steps: int | None = None, warmup: int | None = None, overfit_steps: int | None = None,
        overfit_seconds: float | None = None, config: Config = SEED, offline_config: Config | None = NOTEBOOK_OFFLINE,
        amp: bool | None = None, log=print) -> dict:
    """The whole benchmark on one device. CPU defaults, to fit in minutes: 3 timed steps after 1 warm-up step, and
    overfitting stopped after 120 s. GPU defaults: 100 timed steps after 10, overfitting up to 5000 steps (20 min),
    fp16 autocast. `offline_config`, when given, is also overfitted: the notebook's own offline run."""
    namespace = reference_namespace()
    torch = namespace["torch"]
    gpu = device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device}, but torch sees no GPU")
    amp = gpu if amp is None else amp
    steps = steps or (100 if gpu else 3)
    warmup = warmup if warmup is not None else (10 if gpu else 1)
    overfit_steps = overfit_steps or 5000
    overfit_seconds = overfit_seconds or (1200.0 if gpu else 120.0)
    load_before = os.getloadavg()[0]
    dataset, tokenizer, tokenizer_description = load_data_and_tokenizer()
    texts = dataset["train"]
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's vocabulary {config.vocab_size}")
    difference = sdpa_difference(namespace, config, device)
    log(f"SDPA variant vs reference, largest logit difference (eval, float32): {difference:.2e}")
    if difference > 1e-3:
        raise AssertionError(f"the SDPA variant does not compute the reference model ({difference:.2e} apart)")
    log(f"timing {len(VARIANTS)} variants, taking turns ({warmup} warm-up + {steps} steps each) ...")
    results = throughput(namespace, tokenizer, texts, config, device, steps, warmup, VARIANTS, amp=amp)
    runs = [("seed configuration", config)]
    if offline_config is not None:
        runs.append(("notebook's offline run", replace(offline_config, vocab_size=len(tokenizer))))
    overfitting = []
    for name, run_config in runs:
        log(f"overfitting one batch, {name} (at most {overfit_steps} steps or {overfit_seconds:.0f} s) ...")
        overfitting.append({"run": name, "config": asdict(run_config), **overfit(
            namespace, tokenizer, texts, run_config, device, overfit_steps, overfit_seconds, amp=amp)})
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": device,
            "machine": _machine(device, torch), "torch": torch.__version__,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "precision": "fp16 autocast + GradScaler" if amp else "float32", "config": asdict(config),
            "tokenizer": tokenizer_description, "sdpa_max_logit_difference": difference,
            "throughput": results, "overfit": overfitting}


def _describe(config: dict) -> str:
    return (f"hidden {config['hidden_size']}, {config['num_layers']} layers, {config['num_heads']} heads, seq_len "
            f"{config['seq_len']}, batch {config['batch_size']}, vocabulary {config['vocab_size']}, AdamW lr {config['lr']:g}")


def table(result: dict) -> str:
    load = result["load_average"]
    lines = [f"Training benchmark, {result['date']}: {result['machine']}, torch {result['torch']}, {result['precision']}"
             f" (load average {load[0]} at the start, {load[1]} at the end)",
             f"model: {_describe(result['config'])}", f"tokenizer: {result['tokenizer']}",
             f"SDPA variant vs reference: largest logit difference {result['sdpa_max_logit_difference']:.1e}", ""]
    base = result["throughput"][0]["tokens_per_s"]
    header = f"{'variant':<50} {'batch':>7} {'steps':>5} {'s/step':>7} {'CPU s/step':>10} {'tokens/s':>9} {'vs ref':>6}"
    lines += [header, "-" * len(header)]
    for row in result["throughput"]:
        shape = "x".join(map(str, row["batch_shape"]))
        lines.append(f"{row['variant']:<50} {shape:>7} {row['steps']:>5} {row['seconds_per_step']:>7.3f} "
                     f"{row['cpu_seconds_per_step']:>10.3f} {row['tokens_per_s']:>9,.0f} {row['tokens_per_s'] / base:>5.2f}x")
    lines.append("")
    for o in result["overfit"]:
        losses = f"loss {o['first_loss']:.2f} -> {o['final_loss']:.3f}"
        outcome = (f"{losses} < {o['target_loss']} in {o['steps']} steps, {o['seconds']:.1f} s" if o["reached"] else
                   f"NOT reached, stopped after {o['steps']} steps, {o['seconds']:.1f} s: {losses}")
        lines.append(f"overfit one batch, {o['run']} ({_describe(o['config'])}; {o['real_target_tokens']} real target "
                     f"tokens): {outcome}")
    return "\n".join(lines)


def main(device: str = "cpu", steps: int | None = None, warmup: int | None = None, overfit_steps: int | None = None,
         overfit_seconds: float | None = None, out: Path | None = None) -> dict:
    result = run(device, steps, warmup, overfit_steps, overfit_seconds)
    print()
    print(table(result))
    out = out if out is not None else layout.COURSE.reports_of(ASSIGNMENT) / f"bench_training_{device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return result
