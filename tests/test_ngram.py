"""Known-answer tests of the n-gram family (baselines/ngram*.py, baselines/arpa.py).

* every smoothing: distributions sum to one; the fast paths equal the step-by-step reference;
* nltk.lm agreement to 1e-9 where the definitions coincide (see :func:`nltk_stream` for how the
  training text is arranged so they do, and :func:`with_our_unigrams` for where they do not);
* an independent dictionary-based implementation of KenLM-style (modified) Kneser-Ney,
  absolute discounting and Witten-Bell with sentence boundaries, and a hand-computed example;
* ARPA round trips and a hand-written ARPA file; MLE's zero probabilities reach the harness error;
* PTB known answers (KenLM ``lmplz``: KN5 141.19, KN3 148.28) when the corpus is on disk.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from lmladder.api import ConfigError, ContextPolicy, LanguageModel, Vocab
from lmladder.baselines.ngram import NGramLM
from lmladder.scoring import ScoringError, check_logprobs

SEED = 20261122
SMOOTHINGS = ["mle", "add-k", "witten-bell", "absolute-discounting", "kneser-ney",
              "modified-kneser-ney"]
EOS = "<eos>"


def markov_stream(n: int, words: int, seed: int, p_end: float = 0.15) -> list[str]:
    """``n`` tokens from a random first-order source over ``w0..w{words-1}`` with ``<eos>``."""
    rng = np.random.default_rng(seed)
    trans = rng.dirichlet(np.full(words, 0.4), size=words)
    out, prev = [], int(rng.integers(words))
    for _ in range(n):
        if rng.random() < p_end:
            out.append(EOS)
            prev = int(rng.integers(words))
        else:
            prev = int(rng.choice(words, p=trans[prev]))
            out.append(f"w{prev}")
    return out


def mixed_stream(n: int, seed: int, common: int = 6, rare: int = 40) -> list[str]:
    """:func:`markov_stream` over ``common`` words with a fifth of its words replaced by Zipfian
    draws from ``rare`` more: rare words give every order non-zero count-of-counts n1..n4, so
    modified Kneser-Ney's discounts are all defined (no fallback) even for unigrams."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, rare + 1) ** 1.1
    p /= p.sum()
    return [f"w{common + int(rng.choice(rare, p=p))}" if t != EOS and rng.random() < 0.2 else t
            for t in markov_stream(n, common, seed, p_end=0.2)]


def make_vocab(words: int) -> Vocab:
    # One never-seen token (<unk>) so that |V| equals nltk's vocabulary size (it adds <UNK>).
    return Vocab([EOS, *(f"w{i}" for i in range(words)), "<unk>"], boundary=EOS, unk="<unk>")


@pytest.fixture(scope="module")
def corpus():
    """A small corpus: (vocab, train ids, test ids); test has random tokens for unseen events."""
    vocab = make_vocab(6)
    train = vocab.encode(markov_stream(400, 6, SEED))
    rng = np.random.default_rng(SEED + 1)
    test = vocab.encode(markov_stream(60, 6, SEED + 2))
    test = np.concatenate([test, rng.integers(0, len(vocab) - 1, size=40)])
    return vocab, train, test


def fit(vocab, train, **config) -> NGramLM:
    model = NGramLM(**config)
    model.fit(train, vocab)
    return model


# ---------------------------------------------------------------------------------------------
# Contract-level properties for every smoothing


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_distributions_sum_to_one_and_fast_paths_match(corpus, smoothing, cross):
    vocab, train, test = corpus
    for order in (1, 2, 4):
        model = fit(vocab, train, order=order, smoothing=smoothing, cross_boundary=cross)
        rng = np.random.default_rng(order)
        seen, unseen = test[:10], rng.integers(0, len(vocab), size=10)
        state = model.init_state(2)
        logp, state = model.step(state, np.full(2, vocab.boundary_id))
        for a, b in zip(seen, unseen, strict=True):
            np.testing.assert_allclose(np.logaddexp.reduce(logp, axis=1), 0.0, atol=1e-12)
            logp, state = model.step(state, np.array([a, b]))
        for policy in (ContextPolicy(), ContextPolicy(reset_at_boundary=True)):
            fast = model.token_logprobs(test, context=policy)
            ref = LanguageModel.token_logprobs(model, test, context=policy)
            np.testing.assert_allclose(fast, ref, atol=1e-12, rtol=0)
            np.testing.assert_array_equal(
                model.next_token_ranks(test, context=policy, chunk=7),
                LanguageModel.next_token_ranks(model, test, context=policy))


def test_ranks_carry_ties_the_way_the_reference_does(corpus):
    """Unseen continuations share their backoff probability: mle gives them all zero, add-k the
    same pseudo-count.  (g, e) of the fast path equals the reference's, ties included, and the
    accuracy splits each tie fairly instead of counting it as a hit."""
    from lmladder.scoring import accuracy_from_ranks

    vocab, train, test = corpus
    for smoothing in ("mle", "add-k"):
        model = fit(vocab, train, order=2, smoothing=smoothing)
        fast = model.next_token_ranks(test, chunk=5)
        np.testing.assert_array_equal(fast, LanguageModel.next_token_ranks(model, test))
        assert (fast[:, 1] > 1).any()  # real ties occur
        # a tie is counted as the expected share of hits, so never more than "g == 0"
        acc = accuracy_from_ranks(fast)
        g, e = fast[:, 0], fast[:, 1]
        assert acc["top1"] == pytest.approx(np.mean(np.where(g == 0, 1 / e, 0.0)))
        assert acc["top1"] <= np.mean(g == 0)


def test_boundary_cuts_history(corpus):
    """cross_boundary=False: what precedes a boundary does not change any later score."""
    vocab, train, _ = corpus
    w = vocab.index
    a = np.array([w["w1"], w["w2"], w["w3"], w[EOS], w["w1"], w["w2"], w["w4"]])
    b = np.array([w["w5"], w["w0"], w["w0"], w[EOS], w["w1"], w["w2"], w["w4"]])
    for cross in (False, True):
        model = fit(vocab, train, order=4, smoothing="modified-kneser-ney", cross_boundary=cross)
        same = np.allclose(model.token_logprobs(a)[4:], model.token_logprobs(b)[4:])
        assert same == (not cross)
        # With reset_at_boundary the cross-boundary model is cut too.
        policy = ContextPolicy(reset_at_boundary=True)
        np.testing.assert_allclose(model.token_logprobs(a, context=policy)[4:],
                                   model.token_logprobs(b, context=policy)[4:])


def test_config_errors():
    with pytest.raises(ConfigError, match="discount"):
        NGramLM(smoothing="witten-bell", discount=0.5)
    with pytest.raises(ConfigError, match="discount"):
        NGramLM(smoothing="kneser-ney", discount=1.5)
    with pytest.raises(ConfigError, match="order"):
        NGramLM(order=0)
    with pytest.raises(ConfigError, match="smoothing"):
        NGramLM(smoothing="good-turing")


def test_mle_zero_probability_reaches_the_harness(corpus):
    vocab, train, test = corpus
    model = fit(vocab, train, order=3, smoothing="mle")
    lp = model.token_logprobs(test)
    assert np.isneginf(lp).any()
    first = int(np.argmax(np.isneginf(lp)))
    with pytest.raises(ScoringError, match=rf"zero probability to token .* at position {first} "):
        check_logprobs(lp, test, vocab, model="mle3", split="test")


def test_num_parameters_and_inspect(corpus):
    vocab, train, _ = corpus
    model = fit(vocab, train, order=3, smoothing="modified-kneser-ney")
    t = model.tables_
    bows = sum(int(np.count_nonzero(b)) for b in t.bow)
    assert model.num_parameters() == sum(t.sizes()) + bows
    # One backoff weight per context that has continuations.
    assert bows == sum(np.count_nonzero(np.diff(t.context_index(j).offsets)) for j in (2, 3))
    table = model.inspect()[0]
    assert [r[0] for r in table["rows"]] == [1, 2, 3] and table["rows"][2][1] == t.sizes()[2]


# ---------------------------------------------------------------------------------------------
# nltk.lm where the definitions coincide


def nltk_stream(vocab, train, *, start_marker: bool) -> list[str]:
    """The training text for nltk: our stream (one boundary, then ``train``) as one sentence
    without padding, which is what ``cross_boundary=True`` counts.  With ``start_marker`` a token
    ``<X>`` is put in front: it gives the n-grams at the very start one left extension, which is
    how our Kneser-Ney counts the start of the stream (as KenLM counts ``<s>``)."""
    words = [EOS, *vocab.decode(train)]
    return (["<X>"] if start_marker else []) + words


def nltk_model(cls, order, sentence, **kwargs):
    from nltk.lm.preprocessing import everygrams

    lm = cls(order=order, **kwargs)
    lm.fit([list(everygrams(sentence, max_len=order))], vocabulary_text=sentence)
    return lm


def with_our_unigrams(cls, unigram: dict[str, float]):
    """nltk's model with its unigram level replaced by ours.

    The definitions differ only there: nltk's Witten-Bell and absolute discounting end in the
    maximum-likelihood unigram (zero for unseen words) and its Kneser-Ney in the continuation
    unigram, while ours interpolate the unigrams with the uniform distribution (and count
    KenLM-style).  Plugging our unigram distribution in makes every higher order comparable.
    """

    class Plugged(cls):
        def unmasked_score(self, word, context=None):
            if not context:
                return unigram[word]
            return super().unmasked_score(word, context)

    return Plugged


def nltk_logprobs(lm, vocab, test, order) -> np.ndarray:
    seq = [EOS, *vocab.decode(test)]
    out = []
    for t in range(1, len(seq)):
        ctx = tuple(seq[max(0, t - order + 1) : t])
        out.append(math.log(lm.score(seq[t], ctx)))
    return np.array(out)


@pytest.mark.parametrize("order,k", [(2, 1.0), (3, 1.0), (3, 0.1)])
def test_add_k_equals_nltk_lidstone(corpus, order, k):
    from nltk.lm import Lidstone

    vocab, train, test = corpus
    ours = fit(vocab, train, order=order, smoothing="add-k", k=k, cross_boundary=True)
    lm = nltk_model(Lidstone, order, nltk_stream(vocab, train, start_marker=False), gamma=k)
    assert len(lm.vocab) == len(vocab)
    np.testing.assert_allclose(ours.token_logprobs(test), nltk_logprobs(lm, vocab, test, order),
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("smoothing,order", [("witten-bell", 3), ("absolute-discounting", 3),
                                             ("kneser-ney", 3), ("kneser-ney", 4)])
def test_interpolated_equal_nltk_above_the_unigrams(corpus, smoothing, order):
    from nltk.lm import (
        AbsoluteDiscountingInterpolated,
        KneserNeyInterpolated,
        WittenBellInterpolated,
    )

    vocab, train, test = corpus
    config, cls, kwargs = {
        "witten-bell": ({}, WittenBellInterpolated, {}),
        "absolute-discounting": ({"discount": 0.75}, AbsoluteDiscountingInterpolated,
                                 {"discount": 0.75}),
        "kneser-ney": ({"discount": 0.1}, KneserNeyInterpolated, {"discount": 0.1}),
    }[smoothing]
    ours = fit(vocab, train, order=order, smoothing=smoothing, cross_boundary=True, **config)
    unigram = dict(zip(vocab.tokens, np.exp(ours.tables_.logp[0]), strict=True))
    sentence = nltk_stream(vocab, train, start_marker=smoothing == "kneser-ney")
    lm = nltk_model(with_our_unigrams(cls, unigram), order, sentence, **kwargs)
    np.testing.assert_allclose(ours.token_logprobs(test), nltk_logprobs(lm, vocab, test, order),
                               atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------
# An independent reference: KenLM-style counting over sentences, recursive interpolation


class Reference:
    """Interpolated n-gram model over sentences ``<s> w.. </s>``, written from the definitions
    with dictionaries: ``p(w|h) = (c(hw) - D(c)) / C(h) + gamma(h) p(w|h[1:])`` (or Witten-Bell),
    with KenLM's adjusted counts and Chen & Goodman's discounts."""

    def __init__(self, sentences, order, vocab_size, *, kind, adjusted, levels=3):
        self.n, self.v, self.kind = order, vocab_size, kind
        raw = defaultdict(int)
        for s in sentences:
            for i in range(1, len(s)):
                for k in range(1, min(order, i + 1) + 1):
                    raw[tuple(s[i - k + 1 : i + 1])] += 1
        counts = {}
        for g, c in raw.items():
            if not adjusted or len(g) == order or g[0] == "<s>":
                counts[g] = c
            else:
                counts[g] = sum(1 for h in raw if len(h) == len(g) + 1 and h[1:] == g)
        self.by_ctx = defaultdict(dict)
        for g, c in counts.items():
            self.by_ctx[g[:-1]][g[-1]] = c
        self.d = {}
        for k in range(1, order + 1):
            nk = [sum(1 for g, c in counts.items() if len(g) == k and c == i) for i in (1, 2, 3, 4)]
            y = nk[0] / (nk[0] + 2 * nk[1])
            d = [i - (i + 1) * y * nk[i] / nk[i - 1] for i in (1, 2, 3)] if levels == 3 else [y] * 3
            assert all(0 < x <= i for i, x in enumerate(d, 1)), (k, nk, d)
            self.d[k] = d

    def prob(self, w, h) -> float:
        h = h[-(self.n - 1) :] if self.n > 1 else ()
        lower = (lambda: 1.0 / self.v) if not h else (lambda: self.prob(w, h[1:]))
        conts = self.by_ctx.get(h)
        if not conts:
            return lower()
        total, c = sum(conts.values()), conts.get(w, 0)
        if self.kind == "witten-bell":
            t = len(conts)
            return c / (total + t) + t / (total + t) * lower()
        d = self.d[len(h) + 1]
        disc = lambda x: d[min(x, 3) - 1]  # noqa: E731
        gamma = sum(disc(x) for x in conts.values()) / total
        return (c - disc(c) if c else 0.0) / total + gamma * lower()


def sentences_of(tokens: list[str]) -> list[list[str]]:
    """KenLM's view of a stream preceded by one boundary: ``<s> ... </s>`` per line; a last line
    without its boundary gets no ``</s>``."""
    out, cur = [], ["<s>"]
    for t in tokens:
        if t == EOS:
            out.append([*cur, "</s>"])
            cur = ["<s>"]
        else:
            cur.append(t)
    if len(cur) > 1:
        out.append(cur)
    return out


@pytest.mark.parametrize("smoothing,order", [("modified-kneser-ney", 3),
                                             ("modified-kneser-ney", 4), ("kneser-ney", 3),
                                             ("absolute-discounting", 3), ("witten-bell", 3)])
def test_matches_independent_reference_with_sentence_boundaries(smoothing, order):
    vocab = make_vocab(46)
    words = mixed_stream(2500, SEED)[:-3]  # ends inside a line
    test = mixed_stream(150, SEED + 4) + ["w1", "w1", "w0", "w45", "w4", "w2", "<unk>", "w3"]
    ours = fit(vocab, vocab.encode(words), order=order, smoothing=smoothing)
    ref = Reference(sentences_of(words), order, len(vocab),
                    kind="witten-bell" if smoothing == "witten-bell" else "discount",
                    adjusted=smoothing in ("kneser-ney", "modified-kneser-ney"),
                    levels=3 if smoothing == "modified-kneser-ney" else 1)
    expected, hist = [], ["<s>"]
    for t in test:
        expected.append(math.log(ref.prob("</s>" if t == EOS else t, tuple(hist))))
        hist = ["<s>"] if t == EOS else [*hist, t]
    np.testing.assert_allclose(ours.token_logprobs(vocab.encode(test)), expected,
                               atol=1e-10, rtol=0)
    if smoothing != "witten-bell":
        used = (ours.discounts_[:, :3] if smoothing == "modified-kneser-ney"
                else ours.discounts_[:, :1])
        np.testing.assert_allclose(used, [ref.d[k][: used.shape[1]] for k in range(1, order + 1)])


def test_hand_computed_kneser_ney_bigram():
    """Bigram KN, D = 0.5, training ``a b <eos> a a <eos>``, V = {<eos>, a, b, <unk>}.

    Sentences ``<s> a b </s>``, ``<s> a a </s>``.  Continuation counts: a 2 ({<s>, a}), b 1 ({a}),
    </s> 2 ({a, b}), <unk> 0; total 5; gamma = 0.5 * 3 / 5 = 0.3, so p(a) = 1.5/5 + 0.3/4 = 0.375,
    p(b) = 0.175, p(</s>) = 0.375, p(<unk>) = 0.075.  Context <s>: c(<s> a) = 2, gamma 0.25:
    p(a|<s>) = 1.5/2 + 0.25 * 0.375 = 0.84375, p(b|<s>) = 0.25 * 0.175 = 0.04375.  Context a:
    C = 3, gamma = 0.5: p(b|a) = 0.5/3 + 0.5 * 0.175.  Context b: C = 1, gamma = 0.5:
    p(</s>|b) = 0.5 + 0.5 * 0.375 = 0.6875.
    """
    vocab = Vocab([EOS, "a", "b", "<unk>"], boundary=EOS, unk="<unk>")
    for smoothing in ("kneser-ney", "modified-kneser-ney"):
        model = fit(vocab, vocab.encode("a b <eos> a a <eos>".split()), order=2,
                    smoothing=smoothing, discount=0.5)
        np.testing.assert_allclose(np.exp(model.tables_.logp[0]), [0.375, 0.375, 0.175, 0.075])
        got = np.exp(model.token_logprobs(vocab.encode("a b <eos> b".split())))
        np.testing.assert_allclose(got, [0.84375, 0.5 / 3 + 0.5 * 0.175, 0.6875, 0.04375])


# ---------------------------------------------------------------------------------------------
# ARPA


@pytest.mark.parametrize("cross", [False, True])
def test_arpa_round_trip(corpus, tmp_path, cross):
    vocab, train, test = corpus
    for smoothing, order in itertools.product(
            ["mle", "witten-bell", "absolute-discounting", "modified-kneser-ney"], (1, 3, 4)):
        model = fit(vocab, train, order=order, smoothing=smoothing, cross_boundary=cross)
        path = model.to_arpa(tmp_path / f"{smoothing}{order}.arpa")
        text = path.read_text()
        assert ("<s>" in text) == (not cross) and ("</s>" in text) == (not cross)
        back = NGramLM.from_arpa(path, vocab, smoothing=smoothing)
        assert back.cfg.order == order and back.cfg.cross_boundary == cross
        assert back.num_parameters() == model.num_parameters()
        for policy in (ContextPolicy(), ContextPolicy(reset_at_boundary=True)):
            np.testing.assert_allclose(back.token_logprobs(test, context=policy),
                                       model.token_logprobs(test, context=policy),
                                       atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="add-k"):
        fit(vocab, train, order=2, smoothing="add-k").to_arpa(tmp_path / "x.arpa")


def test_read_hand_written_arpa(tmp_path):
    path = tmp_path / "tiny.arpa"
    path.write_text(
        "made by hand\n\\data\\\nngram 1=5\nngram 2=3\n\n\\1-grams:\n"
        "-99\t<s>\t-0.30103\n-0.5\t</s>\n-0.6\ta\t-0.2\n-0.7\tb\n-1.2\t<unk>\n\n"
        "\\2-grams:\n-0.1\t<s> a\n-0.2\ta b\n-0.3\ta </s>\n\n\\end\\\n")
    vocab = Vocab([EOS, "a", "b", "<unk>"], boundary=EOS, unk="<unk>")
    model = NGramLM.from_arpa(path, vocab)
    assert model.cfg.order == 2 and not model.cfg.cross_boundary
    # a|<s>  b|a  </s>|b (no bow for b)  b|<s> (bow of <s>)  a|b  a|a (bow of a)
    expected = np.array([-0.1, -0.2, -0.5, -0.30103 - 0.7, -0.6, -0.2 - 0.6]) * math.log(10)
    ids = vocab.encode("a b <eos> b a a".split())
    np.testing.assert_allclose(model.token_logprobs(ids), expected, atol=1e-12)
    np.testing.assert_allclose(LanguageModel.token_logprobs(model, ids), expected, atol=1e-12)
    with pytest.raises(ValueError, match="no unigram"):
        NGramLM.from_arpa(path, Vocab([EOS, "a", "b", "c"], boundary=EOS))
    renamed = Vocab([EOS, "a", "B", "<unk>"], boundary=EOS, unk="<unk>")
    model = NGramLM.from_arpa(path, renamed, aliases={"b": "B"})
    np.testing.assert_allclose(model.token_logprobs(renamed.encode("a B".split())),
                               expected[:2], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# PTB known answers (KenLM lmplz on the same 82,430 test tokens: KN5 141.19, KN3 148.28)


@pytest.mark.parametrize("order,low,high,kenlm", [(5, 140, 150, 141.19), (3, 145, 160, 148.28)])
def test_ptb_kneser_ney_known_answers(data_dir, order, low, high, kenlm):
    from lmladder.data import load_dataset
    from lmladder.scoring import score_split

    ds = load_dataset("ptb", data_dir)
    model = fit(ds.vocab, ds.train.ids, order=order, smoothing="modified-kneser-ney")
    metrics, _ = score_split(model, ds.test, ds.vocab, name=f"kn{order}")
    assert metrics.tokens == 82_430
    assert low <= metrics.ppl <= high
    assert abs(metrics.ppl - kenlm) < 0.05  # same counts and discounts as lmplz


def test_uniform_is_the_floor(data):
    """The uniform model's perplexity is the vocabulary size and every token ties for first."""
    from lmladder.baselines.uniform import UniformLM
    from lmladder.scoring import metrics_from_logprobs

    model = UniformLM()
    model.fit(data.train.ids, data.vocab)
    v = len(data.vocab)
    lp = model.token_logprobs(data.test.ids)
    assert metrics_from_logprobs(lp, data.test).ppl == pytest.approx(v)
    np.testing.assert_array_equal(model.next_token_ranks(data.test.ids[:5]), [[0, v]] * 5)
    np.testing.assert_allclose(lp, LanguageModel.token_logprobs(model, data.test.ids))
