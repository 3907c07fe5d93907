"""A report of 500 cells renders in under 10 s and stays under 5 MB (issue 10).

The records are built in code with the shape of real ones (copied from a quick run and a reference
run: PTB and synthetic, n-gram discount tables, HMM state tables, training histories, cloze and
continuation tasks, failed and skipped cells), varied over model, label, config, seed, dataset,
budget and training fraction, so that the report has many rows, many plots and many model cards.
The limits are generous on purpose: CI machines are slow and shared, and a report that is slower
or larger than this by a wide margin is a regression a user would notice.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path

from lmladder.record import API_VERSION
from lmladder.reports.render import render_report
from lmladder.results import parse_record, record_path, write_record

CELLS = 500
MAX_SECONDS = 10.0  # wall-clock seconds for render_report, scanning the folder included
MAX_BYTES = 5 * 1024 * 1024  # the HTML file, in bytes
SEED = 20261127  # printed with the result, so a slow case can be rebuilt exactly

# name -> (class, family-shaped config, parameter count at that config)
MODELS = {
    "kn3": ("lmladder.baselines.ngram:NGramLM", {"order": 3, "smoothing": "modified-kneser-ney"},
            650_000),
    "kn5": ("lmladder.baselines.ngram:NGramLM", {"order": 5, "smoothing": "modified-kneser-ney"},
            1_250_000),
    "laplace2": ("lmladder.baselines.ngram:NGramLM", {"order": 2, "smoothing": "add-k", "k": 1.0},
                 16_288),
    "hmm": ("lmladder.baselines.hmm:HMM", {"states": 64, "threads": 1}, 644_160),
    "lstm": ("lmladder.neural.rnn:RNNLM", {"cell": "lstm", "hidden": 128, "layers": 1,
                                           "bptt": 20, "batch_size": 32, "lr": 5e-3}, 183_696),
    "gru": ("lmladder.neural.rnn:RNNLM", {"cell": "gru", "hidden": 128, "layers": 1,
                                         "bptt": 20, "batch_size": 32, "lr": 5e-3}, 150_672),
    "transformer": ("lmladder.neural.transformer:TransformerLM",
                    {"layers": 2, "heads": 2, "width": 64, "context": 32, "lr": 5e-3}, 162_048),
}
FAMILIES = {"kn3": "n-gram", "kn5": "n-gram", "laplace2": "n-gram", "hmm": "HMM", "lstm": "RNN",
            "gru": "RNN", "transformer": "Transformer"}
DATASETS = {  # name -> (level, vocabulary size, train tokens)
    "synthetic": ("word", 400, 200_000),
    "ptb": ("word", 10_000, 929_589),
    "wikitext2": ("word", 33_278, 2_088_628),
    "shakespeare": ("char", 65, 1_003_854),
}
FRACTIONS = (1.0, 0.5, 0.25, 0.125, 0.0625)


def _split(tokens: int, ppl: float) -> dict:
    """Scores of one split at perplexity ``ppl`` (natural-log nats, bits per token)."""
    nll = math.log(ppl)
    return {"tokens": tokens, "nats": nll * tokens, "nll": nll, "ppl": ppl,
            "bits_per_token": nll / math.log(2), "bpc": nll / math.log(2) / 4.3,
            "word_ppl": ppl}


def _inspect(model: str, rng: random.Random) -> list[dict]:
    """The model-card tables a real record of ``model`` carries."""
    if model.startswith(("kn", "laplace")):
        order = MODELS[model][1]["order"]
        rows = [[n, rng.randint(400, 400_000)] + [round(rng.uniform(0.2, 2.0), 4)] * 3
                for n in range(1, order + 1)]
        return [{"title": f"{MODELS[model][1]['smoothing']} {order}-gram: n-grams and discounts",
                 "columns": ["order", "n-grams", "D1", "D2", "D3+"], "rows": rows}]
    if model == "hmm":
        words = " ".join(f"w{rng.randint(0, 999)} (0.0{rng.randint(1, 9)})" for _ in range(8))
        return [{"title": "HMM: top 8 words of the 10 most used of 64 states",
                 "columns": ["state", "share of tokens", "top words (emission probability)"],
                 "rows": [[s, round(rng.random() / 10, 4), words] for s in range(10)]}]
    return []


def _tasks(rng: random.Random) -> dict:
    accuracy = rng.uniform(0.2, 0.8)
    sample = {"prompt": "trading in amr shares was suspended", "truth": "amr last traded at N",
              "greedy": "of the <unk> of the <unk>", "sampled": "in the <unk> at one of $ N"}
    return {
        "cloze": {"status": "ok", "accuracy": accuracy,
                  "metrics": [{"name": "accuracy", "higher_is_better": True, "chance": 0.2}],
                  "accuracy_ci95": [accuracy - 0.03, accuracy + 0.03], "items": 1000,
                  "choices": 5, "seed": 0, "seconds": rng.uniform(0.1, 5)},
        "continuation": {"status": "ok", "prompts": 100, "seed": 0,
                         "greedy_bleu": rng.uniform(1, 8), "greedy_chrf": rng.uniform(5, 20),
                         "sampled_bleu": rng.uniform(1, 8), "sampled_chrf": rng.uniform(5, 20),
                         "greedy_repetition": rng.random(), "sampled_repetition": rng.random(),
                         "samples": [sample] * 3, "seconds": rng.uniform(1, 4),
                         "metrics": [{"name": name, "higher_is_better": higher, "chance": None}
                                     for name, higher in (("greedy_bleu", True),
                                                          ("greedy_chrf", True),
                                                          ("greedy_repetition", False))]},
    }


def _history(model: str, steps: int, rng: random.Random) -> list[dict]:
    """A training history: ``steps`` points of loss falling towards a plateau, as fit() logs."""
    loss0, loss1 = rng.uniform(6, 9), rng.uniform(3.5, 5.5)
    out = []
    for i in range(1, steps + 1):
        loss = loss1 + (loss0 - loss1) * math.exp(-i / (steps / 4))
        if model == "hmm":
            out.append({"states": 64, "pass": i, "steps": 114 * i, "train_nll": loss,
                        "seconds": 2.5 * i, "valid_nll": loss + 0.1})
        else:
            out.append({"loss": loss, "step": 10 * i, "tokens": 6400 * i,
                        "seconds": 0.15 * i, "lr": 5e-3 * (1 - i / (steps + 1))})
    return out


def make_record(index: int, rng: random.Random) -> dict:
    """Result record number ``index``: a varied cell with the shape of a real api-3 record."""
    model = list(MODELS)[index % len(MODELS)]
    dataset = list(DATASETS)[(index // len(MODELS)) % len(DATASETS)]
    klass, config, parameters = MODELS[model]
    level, vocab, train_tokens = DATASETS[dataset]
    seed = index % 3
    fraction = FRACTIONS[(index // 3) % len(FRACTIONS)]
    config = {**config, "variant": index // 84}  # distinct configs of one label: distinct rows
    neural = model in ("lstm", "gru", "transformer")
    budget = ({"tokens": 800_000} if neural else {"steps": 40} if model == "hmm" else {})
    with_tasks = index % 4 == 0
    cell = {"matrix": f"scale-{index % 5}", "model": model,
            "label": f"{model.upper()} v{index // 84}", "config": config, "dataset": dataset,
            "seed": seed, "device": "cpu", "budget": budget,
            "scoring": {"reset_at_boundary": False, "window": None, "stride": None,
                        "accuracy_tokens": 5000},
            "threads": 1, "fraction": fraction, "tasks": ["cloze", "continuation"]
            if with_tasks else []}
    key = hashlib.sha256(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:16]
    record = {
        "api_version": API_VERSION, "key": key, "status": "ok", "error": None, "cell": cell,
        "provenance": {"git_commit": "b171927" + "0" * 33, "git_dirty": False,
                       "date": f"2026-11-27T{index // 60 % 24:02d}:{index % 60:02d}:00+00:00",
                       "python": "3.11.7", "platform": "Linux-x86_64", "machine": "x86_64",
                       "cpu_count": 2, "versions": {"lmladder": "0.2.0", "torch": "2.13.0+cpu"},
                       "argv": ["lmladder", "run", "scale"]},
        "limits": {"time_limit_s": 1800.0, "memory_limit_mib": None, "isolated": True},
    }
    if index % 23 == 5:  # a crash of the cell: what run_cell writes for a failure
        record.update(status="failed", error={
            "type": "RuntimeError", "message": "loss is nan at step 17",
            "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: nan\n"})
        return record
    if index % 29 == 7:  # a corpus that is not on disk
        record.update(status="skipped", error={
            "type": "DataNotFoundError", "traceback": None,
            "message": f"{dataset}: not found; put ptb.train.txt, ptb.valid.txt and "
                       "ptb.test.txt in ~/.cache/lmladder/ptb"})
        return record
    ppl = rng.uniform(20, 400) * (1.5 - fraction / 2)
    trained = int(train_tokens * fraction)
    steps = rng.randint(20, 120) if (neural or model == "hmm") else 0
    record.update({
        "dataset": {"name": dataset, "level": level, "vocab_size": vocab,
                    "vocab_sha256": hashlib.sha256(dataset.encode()).hexdigest(),
                    "boundary": "<eos>", "unk": "<unk>" if dataset != "synthetic" else None,
                    "splits": {s: {"tokens": n, "chars": 4 * n, "words": n, "lines": n // 13,
                                   "oov": 0} for s, n in (("train", trained),
                                                          ("valid", 20_000), ("test", 20_000))}},
        "budget_used": {"tokens": int(800_000 * fraction) if neural else None,
                        "steps": 40 if model == "hmm" else None, "seconds": None},
        "protocol": {"reset_at_boundary": False, "window": None, "stride": None,
                     "accuracy_tokens": 5000, "first_context": "one boundary token '<eos>'",
                     "token": "word + one <eos> per line", "unk": None},
        "model": {"class": klass, "revision": 1, "family": FAMILIES[model],
                  "parameters": parameters},
        "metrics": {"valid": _split(20_000, ppl * 0.97), "test": _split(20_000, ppl),
                    "test_accuracy": {"accuracy_tokens": 5000, "top1": rng.uniform(0.05, 0.4),
                                      "top5": rng.uniform(0.2, 0.7)},
                    "test_pseudo": None},
        "oracle": ({"valid": _split(20_000, 31.4), "test": _split(20_000, 32.1)}
                   if dataset == "synthetic" else None),
        "throughput": {"train_tokens_per_s": rng.uniform(1e4, 7e6),
                       "score_tokens_per_s": rng.uniform(1e4, 6e6),
                       "generate_tokens_per_s": rng.uniform(1e2, 1e4)},
        "timing": {"fit_s": rng.uniform(0.02, 120), "valid_in_fit_s": 0.05,
                   "score_valid_s": rng.uniform(0.004, 2), "score_test_s": rng.uniform(0.004, 2),
                   "generate_s": rng.uniform(0.01, 0.2)},
        "memory": {"rss_start_mib": 228.3, "rss_peak_mib": rng.uniform(290, 900),
                   "device_peak_mib": None},
        "fit": {"train_tokens": trained, "steps": steps or 1, "seconds": rng.uniform(0.02, 120),
                "history": _history(model, steps, rng),
                "notes": ({"epochs": 800_000 * fraction / train_tokens, "best_step": steps,
                           "train_flops_per_token": 6.0 * parameters} if neural
                          else {"stopped_by": "patience", "passes": steps} if model == "hmm"
                          else {"ngrams_per_order": [400, 15_582]}),
                "valid_seconds": 0.05},
        "inspect": _inspect(model, rng),
        "sample": "\n".join(" ".join(f"w{rng.randint(0, 999)}" for _ in range(12))
                            for _ in range(6)),
        "tasks": _tasks(rng) if with_tasks else {},
    })
    return record


def write_records(folder: Path, count: int = CELLS, seed: int = SEED) -> list[dict]:
    """Write ``count`` records into ``folder`` under their real file names; returns them."""
    rng = random.Random(seed)
    records = [make_record(i, rng) for i in range(count)]
    for record in records:
        checked = parse_record(record)
        write_record(record_path(folder, checked.cell, checked.key), checked)
    return records


def test_the_fixture_is_varied_like_a_real_results_folder(tmp_path):
    records = write_records(tmp_path)
    assert len({r["key"] for r in records}) == CELLS
    assert len(list(tmp_path.glob("*.json"))) == CELLS  # no two records share a file name
    statuses = [r["status"] for r in records]
    assert statuses.count("failed") >= 10 and statuses.count("skipped") >= 10
    ok = [r for r in records if r["status"] == "ok"]
    assert {r["cell"]["dataset"] for r in ok} == set(DATASETS)
    assert {r["cell"]["model"] for r in ok} == set(MODELS)
    assert {r["cell"]["fraction"] for r in ok} == set(FRACTIONS)
    assert {r["cell"]["seed"] for r in ok} == {0, 1, 2}
    assert sum(bool(r["tasks"]) for r in ok) >= 50
    assert sum(bool(r["fit"]["history"]) for r in ok) >= 100


def test_a_500_cell_report_renders_fast_and_small(tmp_path):
    results = tmp_path / "results"
    records = write_records(results)
    out = tmp_path / "report.html"
    start = time.perf_counter()
    render_report(results, out)
    seconds = time.perf_counter() - start
    size = out.stat().st_size
    print(f"\n{CELLS} cells (seed {SEED}): render_report took {seconds:.2f} s, "
          f"report.html is {size / 1e6:.2f} MB")
    assert seconds < MAX_SECONDS, f"{CELLS} cells took {seconds:.1f} s (limit {MAX_SECONDS} s)"
    assert size < MAX_BYTES, f"{CELLS} cells gave {size / 1e6:.1f} MB (limit 5 MB)"
    html = out.read_text(encoding="utf-8")
    assert html.rstrip().endswith("</html>")
    for dataset in DATASETS:  # every dataset of the folder is in the report
        assert dataset in html
    failed = next(r for r in records if r["status"] == "failed")
    assert "loss is nan at step 17" in html  # failures are reported, not dropped
    assert failed["cell"]["label"] in html
