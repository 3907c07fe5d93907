"""Fine-tuning with a classification head (the optional FineTunable capability) and its tasks.

Known answer: on texts whose label is written in them (one class-specific word among random
filler), a tiny LSTM or Transformer reaches ~100% where chance is 50%.  The fitted language model
is left unchanged; the same seed gives the same classifier; a model without the capability is
"not applicable".  Seeds are fixed (``SEED``).
"""

from __future__ import annotations

import numpy as np
import pytest

from lmladder import registry
from lmladder.api import Budget, NotFittedError, supports_fine_tuning
from lmladder.data import build_word_vocab
from lmladder.neural.train import FineTuneConfig
from lmladder.tasks import NotApplicable, Subject, task_class
from lmladder.tasks.finetune import FineTune, encode_texts
from lmladder.tasks.labelled import LabelledData, LabelledSplit

SEED = 0
FILLER = [f"w{i}" for i in range(20)]
CLASS_WORDS = ("bad", "good")
TINY = {
    "lstm": dict(hidden=16, layers=1, bptt=8, batch_size=8, emb_size=None, dropout=0.0,
                 optimizer="adamw", lr=1e-2, max_epochs=None),
    "transformer": dict(layers=1, heads=2, width=32, context=16, batch_size=8, warmup_steps=0,
                        lr=3e-3, dropout=0.0, max_epochs=None),
    "hf-gpt2": dict(n_layer=1, n_head=2, n_embd=32, context=16, batch_size=8, warmup_steps=0,
                    lr=3e-3, dropout=0.0, max_epochs=None),
    "hf-bert": dict(n_layer=1, n_head=2, n_embd=16, context=16, batch_size=8, warmup_steps=0,
                    lr=3e-3, dropout=0.0, max_epochs=None),
}
FT_BUDGET = Budget(steps=100)
FAST = FineTuneConfig(lr=1e-2)  # tiny networks and 100 steps: a high peak rate


def labelled_split(n: int, rng: np.random.Generator) -> LabelledSplit:
    """``n`` texts of 4-9 filler words with the class word at a random place."""
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=int(rng.integers(4, 10))))
        words.insert(int(rng.integers(0, len(words) + 1)), CLASS_WORDS[label])
        texts.append(tuple(words))
        labels.append(label)
    return LabelledSplit(tuple(texts), np.array(labels, dtype=np.int64))


@pytest.fixture(scope="module")
def labelled() -> LabelledData:
    rng = np.random.default_rng(SEED)
    return LabelledData("toy", ("neg", "pos"), labelled_split(320, rng), labelled_split(32, rng),
                        labelled_split(64, rng))


@pytest.fixture(scope="module")
def vocab(labelled):
    return build_word_vocab([list(t) for t in labelled.train.texts])


@pytest.fixture(scope="module")
def fitted(labelled, vocab):
    """Tiny language models pre-trained on the texts' stream (a few steps)."""
    stream = vocab.encode([w for t in labelled.train.texts for w in (*t, "<eos>")])
    out = {}
    for name, config in TINY.items():
        model = registry.build(name, config)
        model.fit(stream, vocab, budget=Budget(steps=20))
        out[name] = model
    return out


def encoded(split: LabelledSplit, vocab):
    return encode_texts(split.texts, vocab)[0]


@pytest.mark.parametrize("name", sorted(TINY))
def test_fine_tuning_reads_a_class_word_and_leaves_the_lm_unchanged(name, fitted, labelled,
                                                                    vocab):
    model = fitted[name]
    probe = vocab.encode(["w1", "good", "w2", "<eos>", "bad", "w3"])
    before = model.token_logprobs(probe)
    train, test = encoded(labelled.train, vocab), encoded(labelled.test, vocab)
    clf = model.fine_tune_classifier(train, labelled.train.labels, 2, budget=FT_BUDGET,
                                     valid=(encoded(labelled.valid, vocab), labelled.valid.labels),
                                     seed=SEED, settings=FAST)
    logits = clf.predict_logits(test)
    assert logits.shape == (len(test), 2) and logits.dtype == np.float64
    accuracy = np.mean(logits.argmax(1) == labelled.test.labels)
    assert accuracy >= 0.95, accuracy  # chance: 0.5; 1.0 for each family at SEED
    assert clf.report.notes["pretrained"] and clf.report.steps == 100
    np.testing.assert_array_equal(model.token_logprobs(probe), before)
    again = model.fine_tune_classifier(train, labelled.train.labels, 2, budget=FT_BUDGET,
                                       valid=(encoded(labelled.valid, vocab),
                                              labelled.valid.labels), seed=SEED,
                                       settings=FAST)
    np.testing.assert_array_equal(again.predict_logits(test), logits)


def test_from_scratch_needs_the_vocabulary_and_leaves_the_model_unfitted(labelled, vocab):
    model = registry.build("lstm", TINY["lstm"])
    train = encoded(labelled.train, vocab)
    with pytest.raises(NotFittedError, match="vocab="):
        model.fine_tune_classifier(train, labelled.train.labels, 2, budget=FT_BUDGET)
    clf = model.fine_tune_classifier(train, labelled.train.labels, 2, budget=Budget(steps=5),
                                     vocab=vocab, seed=SEED)
    assert not clf.report.notes["pretrained"] and model.vocab_ is None
    assert clf.predict_logits(encoded(labelled.test, vocab)).shape == (64, 2)


def test_count_based_models_are_not_applicable(vocab):
    model = registry.build("kn3")
    assert not supports_fine_tuning(model) and supports_fine_tuning(registry.build("lstm"))
    model.fit(vocab.encode(["w1", "w2", "<eos>"]), vocab)
    with pytest.raises(NotApplicable, match="no fine_tune_classifier"):
        task_class("rt-polarity-finetune")().evaluate(Subject(model, None))


def test_the_task_reports_accuracy_and_the_gain_from_pretraining(monkeypatch, fitted, labelled):
    import lmladder.tasks.finetune as finetune

    monkeypatch.setattr(finetune, "load_labelled", lambda name, data_dir=None: labelled)
    model = fitted["lstm"]
    subject = Subject(model, None, budget=Budget(steps=30),
                      fresh=lambda: registry.build("lstm", TINY["lstm"]))
    result = finetune.RtPolarityFineTune().evaluate(subject, seed=SEED)
    for key in ("accuracy", "macro_f1", "scratch_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert result["gain_from_pretraining"] == result["accuracy"] - result["scratch_accuracy"]
    lo, hi = result["accuracy_ci95"]
    assert lo <= result["accuracy"] <= hi and result["oov_rate"] == 0.0
    assert result["fine_tuning"]["pretrained"] and not result["scratch_fine_tuning"]["pretrained"]
    assert {m.name for m in FineTune.metrics} >= {"accuracy", "gain_from_pretraining"}


def test_unknown_words_become_unk_and_characters_are_read_one_by_one(vocab):
    ids, unknown, total = encode_texts([("w1", "zzz")], vocab)
    assert vocab.decode(ids[0]) == ["w1", "<unk>"] and (unknown, total) == (1, 2)
    from lmladder.api import Vocab

    chars = Vocab(["\n", "a", "b", " "], boundary="\n", separator="")
    ids, unknown, total = encode_texts([("ab", "ca")], chars)  # closed: "c" is dropped
    assert "".join(chars.decode(ids[0])) == "ab a" and (unknown, total) == (1, 5)


# -- hf-bert: pseudo-log-likelihood scores and pseudo-perplexity --------------------------------


@pytest.fixture(scope="module")
def bert(data):
    """The smoke hf-bert, pre-trained (masked LM) on the tiny synthetic corpus."""
    model = registry.build("hf-bert", smoke=True)
    model.fit(data.train.ids, data.vocab, budget=Budget(steps=400))
    return model


def oracle_pseudo_logprobs(trans: np.ndarray, emit: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact ln p(w_i | every other token of ``ids``) under the source HMM (forward-backward,
    starting after state 0 as :func:`lmladder.synthetic.sample` does)."""
    n, k = len(ids), trans.shape[0]
    preds, betas = np.empty((n, k)), np.empty((n, k))
    alpha = np.eye(k)[0]
    for i, w in enumerate(ids):  # preds[i] = p(s_i | w_<i)
        preds[i] = alpha @ trans
        alpha = preds[i] * emit[:, w]
        alpha /= alpha.sum()
    beta = np.ones(k)
    for i in range(n - 1, -1, -1):  # betas[i] ~ p(w_>i | s_i)
        betas[i] = beta
        beta = trans @ (emit[:, ids[i]] * beta)
        beta /= beta.sum()
    scores = (preds * betas) @ emit  # (n, V): ~ p(w_i = v, w_-i)
    return np.log(scores[np.arange(n), ids] / scores.sum(axis=1))


def test_pseudo_perplexity_lies_between_the_oracle_and_the_causal_scores(bert, data):
    from lmladder.scoring import pseudo_perplexity, score_split
    from lmladder.synthetic import make_hmm
    from tests.contract import TINY as SOURCE

    n = 300
    trans, emit = make_hmm(SOURCE)
    assert emit.shape[1] == len(data.vocab)
    ids = data.test.ids[:n]
    oracle = float(np.exp(-oracle_pseudo_logprobs(trans, emit, ids).mean()))
    oracle_causal = float(np.exp(-data.test.oracle_logprobs[:n].mean()))
    got = pseudo_perplexity(bert, data.test, data.vocab, max_tokens=n, name="hf-bert")
    assert got["tokens"] == n and np.isfinite(got["pseudo_ppl"]) and got["pseudo_ppl"] > 1
    causal = float(np.exp(-bert.token_logprobs(ids).mean()))
    # both sides of a token tell more than its past; no model beats the true conditionals
    assert oracle < oracle_causal and oracle < got["pseudo_ppl"] < causal, (oracle, got, causal)
    assert got["pseudo_ppl"] == pytest.approx(np.exp(got["pseudo_nll"]))
    full, _ = score_split(bert, data.test, data.vocab)  # the causal path still works
    assert full.ppl > 1
    assert pseudo_perplexity(registry.build("kn3"), data.test, data.vocab) is None


def test_pseudo_scores_mask_the_token_and_see_only_their_window(bert, data):
    from lmladder.api import ContextPolicy

    policy = ContextPolicy(window=4)
    ids = data.test.ids[:12].copy()
    i = 6  # window 4 centred on i: stream positions i-1 .. i+2, i.e. tokens i-2 .. i+1
    base = bert.pseudo_logprobs(ids, context=policy)
    # the token is masked: its own id picks an entry of one distribution, summing to one
    total = 0.0
    for v in range(len(data.vocab)):
        ids2 = ids.copy()
        ids2[i] = v
        total += np.exp(bert.pseudo_logprobs(ids2, context=policy)[i])
    assert total == pytest.approx(1.0, abs=1e-6)
    far, near = ids.copy(), ids.copy()
    far[i + 3] = (far[i + 3] + 1) % len(data.vocab)  # outside the window
    near[i + 1] = (near[i + 1] + 1) % len(data.vocab)  # inside it, after the token
    assert bert.pseudo_logprobs(far, context=policy)[i] == base[i]
    assert bert.pseudo_logprobs(near, context=policy)[i] != base[i]
    lines = bert.pseudo_logprobs(data.test.ids[:40], context=ContextPolicy(reset_at_boundary=True))
    assert np.isfinite(lines).all() and (lines <= 0).all()


def test_pseudo_perplexity_of_a_uniform_scorer_is_the_vocabulary_size(data):
    from lmladder.scoring import pseudo_perplexity
    from tests.toy_models import UniformLM

    class UniformScorer(UniformLM):
        def pseudo_logprobs(self, tokens, *, context=None):
            return np.full(len(tokens), -np.log(len(self._require_fitted())))

    model = UniformScorer()
    model.fit(data.train.ids, data.vocab)
    got = pseudo_perplexity(model, data.test, data.vocab, max_tokens=50)
    assert got["pseudo_ppl"] == pytest.approx(len(data.vocab), rel=1e-12) and got["tokens"] == 50


def test_bert_parameter_count_and_config_checks(bert, data):
    from lmladder.api import ConfigError
    from lmladder.neural.bert import bert_parameter_count

    assert bert.num_parameters() == bert_parameter_count(bert.cfg, len(data.vocab))
    for key, value in (("mask_prob", 0.0), ("context", 1), ("n_head", 3)):
        with pytest.raises(ConfigError, match=key):
            registry.build("hf-bert", {key: value})


def test_max_epochs_bounds_an_unbounded_budget(fitted, labelled, vocab):
    train = encoded(labelled.train, vocab)[:32]
    clf = fitted["lstm"].fine_tune_classifier(train, labelled.train.labels[:32], 2,
                                              budget=Budget(), seed=SEED,
                                              settings=FineTuneConfig(max_epochs=2.0))
    assert clf.report.steps == 4 and clf.report.notes["epochs"] == 2.0  # 2 x 32 texts / 16
