"""The training benchmark (`make bench-training`) builds its model from the notebook's solution and measures sane
figures. Tiny configurations only: the benchmark itself is not a test."""

import json
import math
from dataclasses import asdict

import pytest
import torch

from assignments import PW2
from coursekit import material

bench_training = material.module(PW2, "bench_training")


@pytest.fixture(scope="module")
def namespace(source_nb):
    return bench_training.reference_namespace(source_nb)


@pytest.fixture(scope="module")
def data(source_nb):
    return bench_training.load_data_and_tokenizer(source_nb)


def test_the_reference_model_is_the_notebooks_solution(namespace):
    model = bench_training.build_model(namespace, bench_training.TINY)
    assert type(model).__name__ == "Transformer" and type(model).__module__ == "pw2_transformers_reference"
    logits = model(torch.randint(0, bench_training.TINY.vocab_size, (2, 5)))
    assert logits.shape == (2, 5, bench_training.TINY.vocab_size)
    assert sum(isinstance(m, namespace["CausalSelfAttention"]) for m in model.modules()) == bench_training.TINY.num_layers


def test_the_sdpa_variant_computes_the_reference(namespace):
    config = bench_training.TINY
    assert bench_training.sdpa_difference(namespace, config) < 1e-5
    reference, variant = (bench_training.build_model(namespace, config, sdpa=s).eval() for s in (False, True))
    assert all(a.data_ptr() != b.data_ptr() and torch.equal(a, b)
               for a, b in zip(reference.parameters(), variant.parameters(), strict=True))
    input_ids = torch.randint(0, config.vocab_size, (3, config.seq_len - 3))  # shorter than seq_len
    with torch.no_grad():
        torch.testing.assert_close(variant(input_ids), reference(input_ids), atol=1e-5, rtol=1e-5)
    # the replaced forward is the one that runs: breaking SDPA's causality changes the outputs
    attention = next(m for m in variant.modules() if isinstance(m, namespace["CausalSelfAttention"]))
    attention._F = type("NotCausal", (), {"scaled_dot_product_attention": staticmethod(
        lambda *a, is_causal, **k: torch.nn.functional.scaled_dot_product_attention(*a, is_causal=False, **k))})
    with torch.no_grad():
        assert not torch.allclose(variant(input_ids), reference(input_ids), atol=1e-3)


def test_the_tokenizer_is_the_notebooks_offline_one(data):
    dataset, tokenizer, description = data
    assert len(dataset["train"]) >= bench_training.SEED.batch_size
    assert len(tokenizer) <= bench_training.GPT2_VOCAB and tokenizer.pad_token == tokenizer.eos_token
    assert "BPE" in description or "GPT-2" in description


def test_throughput_is_measured_on_full_batches_for_every_variant(namespace, data):
    dataset, tokenizer, _ = data
    config = bench_training.TINY
    results = bench_training.throughput(namespace, tokenizer, dataset["train"], config, "cpu", steps=2, warmup=1,
                                        variants=bench_training.VARIANTS)
    assert [r["variant"] for r in results] == list(bench_training.VARIANTS)
    for result in results:
        assert result["batch_shape"] == [config.batch_size, config.seq_len]  # the sample's texts fill seq_len
        assert result["steps"] == 2 and result["seconds"] > 0 and result["cpu_seconds_per_step"] > 0
        assert result["tokens_per_s"] == pytest.approx(2 * config.batch_size * config.seq_len / result["seconds"])
        assert 0 < result["last_loss"] < 2 * math.log(config.vocab_size)


def test_overfitting_one_batch_reaches_the_target_and_stops(namespace, data):
    dataset, tokenizer, _ = data
    config = bench_training.replace(bench_training.TINY, dropout=0.0, lr=1e-2)
    result = bench_training.overfit(namespace, tokenizer, dataset["train"], config, "cpu", max_steps=300, target=1.0)
    assert result["reached"] and result["final_loss"] < 1.0 <= result["first_loss"]
    assert 1 < result["steps"] < 300 and result["seconds"] > 0 and result["real_target_tokens"] > 0
    capped = bench_training.overfit(namespace, tokenizer, dataset["train"], config, "cpu", max_steps=3, target=1e-9)
    assert not capped["reached"] and capped["steps"] == 3


def test_the_table_shows_every_variant_and_the_overfitting():
    row = {"batch_shape": [32, 128], "steps": 3, "seconds_per_step": 2.0, "cpu_seconds_per_step": 4.0, "tokens_per_s": 2048.0}
    overfit = {"run": "seed configuration", "config": asdict(bench_training.SEED), "target_loss": 0.5, "reached": False,
               "steps": 60, "seconds": 120.0, "first_loss": 10.9, "final_loss": 7.5, "real_target_tokens": 1194}
    result = {"date": "2026-11-25", "machine": "2-core CPU", "torch": "2", "precision": "float32", "load_average": [1, 2],
              "config": asdict(bench_training.SEED), "tokenizer": "BPE", "sdpa_max_logit_difference": 1e-7,
              "throughput": [row | {"variant": "ref"}, row | {"variant": "sdpa", "tokens_per_s": 4096.0}], "overfit": [overfit]}
    text = bench_training.table(result)
    assert "2,048" in text and "2.00x" in text and "NOT reached, stopped after 60 steps" in text


def test_the_whole_run_on_a_tiny_configuration(tmp_path):
    result = bench_training.run(steps=2, warmup=1, overfit_steps=3, config=bench_training.TINY,
                                offline_config=bench_training.TINY, log=lambda *_: None)
    assert [r["variant"] for r in result["throughput"]] == list(bench_training.VARIANTS)
    assert all(r["tokens_per_s"] > 0 for r in result["throughput"]) and result["sdpa_max_logit_difference"] < 1e-5
    assert [o["steps"] for o in result["overfit"]] == [3, 3] and result["precision"] == "float32"
    assert result["overfit"][1]["config"]["vocab_size"] == 512  # the offline run uses the tokenizer's vocabulary
    assert "BPE" in result["tokenizer"] or "GPT-2" in result["tokenizer"]
    (tmp_path / "result.json").write_text(json.dumps(result))  # the report is plain JSON
    assert "F.scaled_dot_product_attention" in bench_training.table(result)
