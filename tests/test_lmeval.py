"""lmladder models inside lm-evaluation-harness (``lmladder.lmeval``), run by lm-eval itself.

The tasks are defined here: a YAML file per task in ``tmp_path`` reading local JSON-lines files
(lm-eval's ``json`` dataset builder; ``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE`` are set, so
nothing is downloaded).  ``ladder_mc`` is multiple choice: "the cat eats" followed by one of four
foods, the right one at position ``i % 4`` of item ``i``; ``ladder_roll`` is rolling perplexity
over test lines.  Each is run with lm-eval's own ``simple_evaluate`` and checked against numbers
computed here directly from lmladder, not through the adapter:

* the per-choice log-likelihoods and the accuracy equal those from ``token_logprobs`` of the
  whitespace-split sentence minus its context;
* ``word_perplexity`` and ``bits_per_byte`` equal lmladder's own word perplexity and bits per
  character of the same lines (one line per document, so lmladder scores them with
  ``reset_at_boundary``: every document starts after one boundary token, as in lm-eval);
* a model trained on the true sentences scores 100%, a uniform model exactly chance (25%: lm-eval
  takes the first of tied choices, and the right answers are spread evenly over the positions).

Under CI (``$CI`` set) a missing lm-eval fails instead of skipping, as tests/test_browser.py does
for its browser.  About 35 s on 2 CPU cores, most of it in the command-line test: lm-eval's
command line indexes its thousands of built-in tasks before it starts.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_extra

lm_eval = require_extra("lm_eval", "lm-eval")

# after the check above, so a missing lm-eval skips (or fails) with its reason, not an ImportError
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

import lmladder  # noqa: E402
from lmladder.api import ContextPolicy, Vocab  # noqa: E402
from lmladder.lmeval import LadderLM, continuation_text, cut_at, encode_text  # noqa: E402
from lmladder.scoring import score_split  # noqa: E402

ANIMALS = ["cat", "dog", "bird", "cow", "fox", "owl", "bee", "ant"]
FOODS = ["fish", "bone", "seed", "grass", "hen", "mouse", "honey", "sugar"]
CHOICES = 4
TRUE = [f"the {a} eats {f}" for a, f in zip(ANIMALS, FOODS, strict=True)]
# Every other animal is mostly seen eating the next animal's food: a model of this text gets
# half of the items wrong.  The "sees" lines give the n-gram counts some variety.
NOISY = (TRUE * 2
         + [f"the {a} eats {FOODS[(i + 1) % 8]}" for i, a in enumerate(ANIMALS) if i % 2] * 3
         + [f"a {a} sees the {b}" for a in ANIMALS for b in ANIMALS[:3]] * 2)
# test lines with words never seen in training ("yak", "hay"): lmladder maps them to <unk>
ROLLING = ["the cat eats fish", "a dog sees the yak", "the yak eats hay", "the owl eats mouse",
           "a bee sees the cat"]


def _items() -> list[dict]:
    """Item i: "the <animal i> eats", its food and the next three, the right one at i % 4."""
    items = []
    for i, animal in enumerate(ANIMALS):
        foods = [FOODS[(i + k) % len(FOODS)] for k in range(CHOICES)]
        gold = i % CHOICES
        choices = foods[1 : gold + 1] + foods[:1] + foods[gold + 1 :]
        items.append({"context": f"the {animal} eats", "choices": choices, "gold": gold})
    return items


def _corpus(folder: Path, train: list[str], test: list[str]) -> str:
    """A ``text:`` dataset folder; returns its dataset name."""
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "valid.txt").write_text("\n".join(train[:4]) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return f"text:{folder}"


def _task(path: Path, name: str, data: Path, cache: Path, spec: str) -> None:
    """An lm-eval task file reading the JSON-lines file ``data`` as its test split."""
    path.write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                    f"    test: {data}\n  cache_dir: {cache}\ntest_split: test\n"
                    + textwrap.dedent(spec).lstrip("\n"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Corpora, task files and an offline Hugging Face environment for the module's tests."""
    root = tmp_path_factory.mktemp("lmeval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(root / "hf"))
        (root / "mc.jsonl").write_text("".join(json.dumps(x) + "\n" for x in _items()))
        (root / "roll.jsonl").write_text(
            "".join(json.dumps({"text": line + "\n"}) + "\n" for line in ROLLING))
        tasks = root / "tasks"
        tasks.mkdir()
        _task(tasks / "mc.yaml", "ladder_mc", root / "mc.jsonl", root / "datasets", """
            output_type: multiple_choice
            doc_to_text: "{{context}}"
            doc_to_choice: choices
            doc_to_target: gold
            metric_list:
              - metric: acc
            """)
        _task(tasks / "roll.yaml", "ladder_roll", root / "roll.jsonl", root / "datasets", """
            output_type: loglikelihood_rolling
            doc_to_text: ""
            doc_to_target: text
            metric_list:
              - metric: word_perplexity
              - metric: bits_per_byte
            """)
        yield {
            "root": root,
            "tasks": tasks,
            "true": _corpus(root / "true", TRUE * 3, TRUE),
            "noisy": _corpus(root / "noisy", NOISY, ROLLING),
        }


def _evaluate(env, model, tasks: list[str], model_args: str | None = None) -> dict:
    return lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=tasks, log_samples=True, bootstrap_iters=0,
        task_manager=TaskManager(include_path=str(env["tasks"]), include_defaults=False),
    )


def _fitted(name: str, dataset: str):
    model = lmladder.build(name)
    data = lmladder.load_dataset(dataset)
    model.fit(data.train.ids, data.vocab)
    return model


def _reference_choice_logprobs(model, item: dict) -> np.ndarray:
    """ln p(choice | context) per choice: ln p of the whole split sentence minus its context."""
    vocab = model.vocab_
    n = len(item["context"].split())
    return np.array([
        model.token_logprobs(vocab.encode(f"{item['context']} {c}".split()))[n:].sum()
        for c in item["choices"]
    ])


# -- through lm-eval's evaluator ---------------------------------------------------------------


def test_multiple_choice_equals_direct_scoring(env):
    model = _fitted("wb3", env["noisy"])
    out = _evaluate(env, LadderLM(model=model), ["ladder_mc"])
    reference = [_reference_choice_logprobs(model, item) for item in _items()]
    for sample in out["samples"]["ladder_mc"]:
        got = [ll for ll, _greedy in sample["filtered_resps"]]
        np.testing.assert_allclose(got, reference[sample["doc_id"]], rtol=0, atol=1e-9)
    accuracy = np.mean([np.argmax(r) == item["gold"]
                        for r, item in zip(reference, _items(), strict=True)])
    assert accuracy == 0.5  # the noisy half is wrong: the comparison is not trivially 0 or 1
    assert out["results"]["ladder_mc"]["acc,none"] == pytest.approx(accuracy, abs=1e-12)


def test_oracle_scores_all_and_a_uniform_model_chance(env):
    # built and fitted by the adapter from lm-eval's argument string, as on the command line
    out = _evaluate(env, "lmladder", ["ladder_mc"], f"model=wb3,dataset={env['true']}")
    assert out["results"]["ladder_mc"]["acc,none"] == 1.0
    uniform = lmladder.build("unigram")
    vocab = lmladder.load_dataset(env["true"]).vocab
    uniform.fit(np.arange(len(vocab)), vocab)  # every token once: add-one gives 1/V each
    out = _evaluate(env, LadderLM(model=uniform), ["ladder_mc"])
    assert out["results"]["ladder_mc"]["acc,none"] == 1 / CHOICES


def test_rolling_perplexity_equals_lmladder_scoring(env):
    model = _fitted("kn3", env["noisy"])
    out = _evaluate(env, LadderLM(model=model), ["ladder_roll"])["results"]["ladder_roll"]
    data = lmladder.load_dataset(env["noisy"])
    assert data.test.oov == 3  # yak, yak, hay
    metrics, _ = score_split(model, data.test, data.vocab,
                             policy=ContextPolicy(reset_at_boundary=True))
    assert out["word_perplexity,none"] == pytest.approx(metrics.word_ppl, rel=1e-12)
    assert out["bits_per_byte,none"] == pytest.approx(metrics.bpc, rel=1e-12)


@pytest.mark.slow  # about 19 s: lm-eval's command line indexes its built-in tasks first
def test_command_line_loads_a_saved_model(env, tmp_path):
    """The documented way: ``python -m lmladder.lmeval`` is lm-eval's CLI with ``lmladder``."""
    folder = _fitted("wb3", env["true"]).save(tmp_path / "wb3.model")
    run = subprocess.run(
        [sys.executable, "-m", "lmladder.lmeval", "--model", "lmladder",
         "--model_args", f"model={folder}", "--tasks", "ladder_mc",
         "--include_path", str(env["tasks"]), "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env=os.environ,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (results,) = (tmp_path / "out").rglob("results_*.json")
    assert json.loads(results.read_text())["results"]["ladder_mc"]["acc,none"] == 1.0


# -- the adapter's pieces ----------------------------------------------------------------------


WORDS = Vocab(["<eos>", "the", "cat", "sat", "<unk>"], boundary="<eos>", unk="<unk>")
CHARS = Vocab(["\n", "a", "b", " "], boundary="\n", separator="")


def test_encode_text_cuts_like_the_dataset():
    enc = encode_text("the cat  sat\nthe dog\n", WORDS)
    assert WORDS.decode(enc.ids) == ["the", "cat", "sat", "<eos>", "the", "<unk>", "<eos>"]
    assert enc.ends.tolist() == [3, 7, 12, 13, 16, 20, 21] and enc.oov == 1
    assert WORDS.decode(encode_text("the cat", WORDS).ids) == ["the", "cat"]  # no final <eos>
    enc = encode_text("ab a\n", CHARS)
    assert enc.ids.tolist() == [1, 2, 3, 1, 0] and enc.ends.tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="'c' is not in the model's vocabulary of 4 tokens"):
        encode_text("abc", CHARS)


def test_continuation_text_and_until():
    ids = WORDS.encode(["cat", "sat", "<eos>", "the"])
    assert continuation_text(ids, WORDS, "the") == " cat sat\nthe"
    assert continuation_text(ids, WORDS, "the ") == "cat sat\nthe"
    assert continuation_text(ids, WORDS, "") == "cat sat\nthe"
    assert continuation_text(CHARS.encode(list("ab")), CHARS, "b") == "ab"
    assert cut_at(" cat sat\nthe", ["\n", "sat"]) == " cat "
    assert cut_at(" cat", ["\n"]) == " cat"


def _requests(kind: str, *args: tuple) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=0) for a in args]


@pytest.fixture(scope="module")
def oracle(env) -> LadderLM:
    return LadderLM(model=_fitted("wb3", env["true"]))


def test_loglikelihood_split_inside_a_word_and_is_greedy(oracle):
    model = oracle.model
    (whole, greedy), (wrong, not_greedy), (split, _) = oracle.loglikelihood(_requests(
        "loglikelihood", ("the cat eats", " fish"), ("the cat eats", " bone"),
        ("the cat ea", "ts fish")))
    ids = model.vocab_.encode("the cat eats fish".split())
    lp = model.token_logprobs(ids)
    assert whole == pytest.approx(lp[3])
    assert greedy and not not_greedy and wrong < whole
    assert split == pytest.approx(lp[2:].sum())  # the straddled word "eats" is scored in full


def test_generate_until(oracle):
    greedy, cut, sampled, again = oracle.generate_until(_requests(
        "generate_until",
        ("the cat", {"until": ["\n"], "max_gen_toks": 5}),
        ("the cat", {"until": ["fish"], "do_sample": False}),
        ("the", {"until": ["\n"], "do_sample": True, "temperature": 1.0, "max_gen_toks": 8}),
        ("the", {"until": ["\n"], "do_sample": True, "temperature": 1.0, "max_gen_toks": 8})))
    assert greedy == " eats fish" and cut == " eats "
    assert sampled == again and sampled.startswith(" ")  # the seed fixes sampled text
    with pytest.raises(ValueError, match="does not support gen_kwargs 'top_p'"):
        oracle.generate_until(_requests("generate_until", ("the", {"top_p": 0.9})))


def test_unknown_words_are_counted_in_a_warning(oracle, caplog):
    with caplog.at_level(logging.WARNING, logger="lmladder.lmeval"):
        (score,) = oracle.loglikelihood_rolling(_requests("loglikelihood_rolling",
                                                          ("the yak eats fish\n",)))
    assert math.isfinite(score)
    assert "1 of 5 tokens of the loglikelihood_rolling requests (20.00%)" in caplog.text


def test_model_args_errors_are_one_line(env):
    with pytest.raises(ValueError, match="model='wb3' is not a saved model folder.*dataset="):
        LadderLM(model="wb3")
    with pytest.raises(ValueError, match="order given without dataset="):
        LadderLM(model=str(env["root"]), order=2)
    with pytest.raises(lmladder.ConfigError, match="lm-eval model_args for 'wb3'.*'colour'"):
        LadderLM(model="wb3", dataset=env["true"], colour=1)


def test_import_without_lm_eval_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "lmladder.lmeval")
    with pytest.raises(ImportError, match=r"pip install 'lmladder\[lm-eval\]'"):
        importlib.import_module("lmladder.lmeval")
