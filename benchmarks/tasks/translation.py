"""Translation, Multi30k English to German, by any language model as a conditional LM.

Every model -- n-gram, HMM, RNN, Transformer -- is trained, under the cell's budget, as a
language model on lines ``source <sep> target <eos>`` (sacrebleu's 13a tokenization, case kept,
one joint vocabulary of the training lines: words seen twice or more, the rest ``<unk>``).  To
translate, it reads ``source <sep>`` after one boundary token and continues greedily until it
writes ``<eos>`` (or twice the source length plus 10 tokens).  BLEU and chrF are sacrebleu's on
the 1,000 sentences of ``test_2016_flickr`` against the untokenized references, with the
signatures recorded.  A count-based model conditions on at most its order's few source words
across ``<sep>``, so it scores near zero: that is the finding, not a bug.  The baseline beside
it: one German sentence given for every source, the one the training targets' counts write with
no source at all (``constant_bleu``, ``constant_chrf``, :func:`constant_translation`).

BLEU and chrF carry 95% intervals (``bleu_ci95``, ``chrf_ci95``, and the constant output's): a
paired percentile bootstrap over the test sentences, seeded with the task seed, each resample's
corpus score recomputed by sacrebleu (:func:`lmladder.tasks.continuation.corpus_interval`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from lmladder.api import LanguageModel, Vocab
from lmladder.corpus import EOS
from lmladder.data import build_word_vocab, locate, read_lines
from lmladder.tasks import (
    MetricSpec,
    NotApplicable,
    Subject,
    Task,
    bootstrap_counts,
    bootstrap_note,
)
from lmladder.tasks.continuation import constant_output, text_scores

SEP = "<sep>"
SAMPLES_KEPT = 3


@dataclass(frozen=True)
class Parallel:
    """Sentence-aligned text: ``(source, target)`` raw lines per split."""

    train: list[tuple[str, str]]
    valid: list[tuple[str, str]]
    test: list[tuple[str, str]]


def load_multi30k(data_dir=None, source: str = "en", target: str = "de") -> Parallel:
    root = locate("multi30k", data_dir)

    def pairs(split: str) -> list[tuple[str, str]]:
        src = read_lines(root / f"multi30k/raw/{split}.{source}")
        tgt = read_lines(root / f"multi30k/raw/{split}.{target}")
        return list(zip(src, tgt, strict=True))

    return Parallel(pairs("train"), pairs("val"), pairs("test_2016_flickr"))


class Translation(Task):
    """English to German on Multi30k by a conditional language model; sacrebleu BLEU, chrF."""

    uses_fitted_model = False

    name = "translation"
    description = ("Multi30k English->German: the model trained on 'source <sep> target' lines "
                   "decodes greedily; sacrebleu BLEU and chrF on test_2016_flickr")
    metrics = (MetricSpec("bleu", higher_is_better=True, chance=0.0),
               MetricSpec("chrf", higher_is_better=True))

    def __init__(self, *, sentences: int | None = None):
        self.sentences = sentences  # None: the whole test set

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        result = translate_and_score(subject, load_multi30k(subject.data_dir), self.sentences,
                                     seed=seed)
        return {**result, "test_set": "multi30k test_2016_flickr, en-de"}


def translate_and_score(subject: Subject, data: Parallel, sentences: int | None = None, *,
                        seed: int = 0) -> dict[str, Any]:
    """Train a fresh model of the subject on ``data.train``, translate the first ``sentences``
    test sources greedily, score them with sacrebleu against the raw references (with 95%
    bootstrap intervals over the sentences, resampled with ``seed``)."""
    tokenize = Tokenizer13a()
    train = [(tokenize(s).split(), tokenize(t).split()) for s, t in data.train]
    vocab = build_word_vocab([[*s, SEP, *t] for s, t in train], min_count=2)
    model = subject.new_model()
    if not model.closed_vocabulary:
        raise NotApplicable(f"{type(model).__name__} cannot generate dataset tokens")
    valid = [(tokenize(s).split(), tokenize(t).split()) for s, t in data.valid]
    model.fit(_stream(train, vocab), vocab, budget=subject.budget, valid=_stream(valid, vocab))
    test = data.test[:sentences]
    hypotheses = [translate(model, vocab, tokenize(s).split(), seed=seed) for s, _ in test]
    references = [t for _, t in test]
    counts = bootstrap_counts(len(test), seed) if test else None
    scores = text_scores(hypotheses, references, counts)
    constant = constant_translation([t for _, t in train], vocab)
    scores.update({f"constant_{k}": v for k, v in text_scores(
        [constant] * len(test), references, counts).items() if not k.endswith("signature")})
    if counts is not None:
        scores["bootstrap"] = bootstrap_note(seed, "test sentences")
    return {**scores, "constant_output": constant, "sentences": len(test), "vocab_size": len(vocab),
            "samples": [{"source": s, "reference": r, "output": h}
                        for (s, r), h in zip(test[:SAMPLES_KEPT], hypotheses, strict=False)]}


def constant_translation(targets: list[list[str]], vocab: Vocab) -> str:
    """The output every source gets from the baseline a translation model must beat: what the
    training targets' counts write with no source (:func:`~lmladder.tasks.continuation.
    constant_output`), as long as the median target, up to a boundary if it writes one --
    "Ein Mann in einem blauen Hemd und mit einem roten Hemd und" on Multi30k."""
    if not targets:
        return ""
    stream = vocab.encode([w for t in targets for w in (*t, EOS)])
    ids = constant_output(stream, vocab.boundary_id, int(np.median([len(t) for t in targets])))
    end = np.flatnonzero(ids == vocab.boundary_id)
    return " ".join(vocab.decode(ids[: end[0] if len(end) else len(ids)]))


def _stream(pairs, vocab: Vocab) -> np.ndarray:
    return vocab.encode([w for s, t in pairs for w in (*s, SEP, *t, EOS)])


def translate(model: LanguageModel, vocab: Vocab, source: list[str], *, seed: int = 0) -> str:
    """Greedy output after ``source <sep>``, up to its first ``<eos>``, as space-joined text."""
    prompt = vocab.encode([*source, SEP])
    out = model.generate(prompt, 2 * len(source) + 10, top_k=1, seed=seed)
    end = np.flatnonzero(out == vocab.boundary_id)
    return " ".join(vocab.decode(out[: end[0] if len(end) else len(out)]))
