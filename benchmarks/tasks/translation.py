"""Translation, Multi30k English to German, by any language model as a conditional LM.

Every model -- n-gram, HMM, RNN, Transformer -- is trained, under the cell's budget, as a
language model on lines ``source <sep> target <eos>`` (sacrebleu's 13a tokenization, case kept,
one joint vocabulary of the training lines: words seen twice or more, the rest ``<unk>``).  To
translate, it reads ``source <sep>`` after one boundary token and continues greedily until it
writes ``<eos>`` (or twice the source length plus 10 tokens).  BLEU and chrF are sacrebleu's
(cased, 13a-tokenized, signatures recorded) against the untokenized references of
``test_2016_flickr`` (1,000 sentences, the one the task ranks by), ``test_2017_flickr`` (1,000) and
``test_2017_mscoco`` (461, out of domain).  ``bleu_lc`` is the same BLEU lower-cased: the Multi30k
literature reports lower-cased BLEU of Moses-tokenized text (multi-bleu.perl on the
``tok/*.lc.norm.tok`` files; Elliott et al. 2016, 2017), which ``bleu_lc`` approaches but does not
reproduce.  ``<unk>`` in an output is scored as one token that matches nothing in a reference.

A count-based model conditions on at most its order's few source words across ``<sep>``, so it
scores near zero: that is the finding, not a bug.  Two baselines are measured on the same
references: one German sentence given for every source, the one the training targets' counts
write with no source at all (``constant_*``, :func:`constant_translation`), and the English source
copied unchanged (``copy_*``: names, numbers and shared words).

BLEU and chrF carry 95% intervals (``bleu_ci95``, ``chrf_ci95``, and the baselines'): a paired
percentile bootstrap over the test sentences, seeded with the task seed, each resample's corpus
score recomputed by sacrebleu from per-sentence statistics, which the result keeps (``paired``)
for paired tests between rows (:mod:`lmladder.significance`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from lmladder.api import LanguageModel, Vocab
from lmladder.corpus import EOS
from lmladder.data import DataNotFoundError, build_word_vocab, locate, read_lines
from lmladder.tasks import (
    MetricSpec,
    NotApplicable,
    Subject,
    Task,
    bootstrap_counts,
    bootstrap_note,
    items_fingerprint,
    paired_block,
)
from lmladder.tasks.continuation import constant_output, named_scores, scorable, text_scores

SEP = "<sep>"
SAMPLES_KEPT = 3


TEST_SETS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")  # the first ranks


@dataclass(frozen=True)
class Parallel:
    """Sentence-aligned text: ``(source, target)`` raw lines per split; ``test`` is the test set
    the task ranks by, ``more_tests`` the others scored beside it, by name."""

    train: list[tuple[str, str]]
    valid: list[tuple[str, str]]
    test: list[tuple[str, str]]
    more_tests: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def load_multi30k(data_dir=None, source: str = "en", target: str = "de") -> Parallel:
    """Multi30k task 1 (Elliott et al. 2016): train, val, test_2016_flickr and the 2017 test sets
    (Elliott et al. 2017), each read as aligned raw lines."""
    root = locate("multi30k", data_dir)

    def pairs(split: str) -> list[tuple[str, str]]:
        src = read_lines(root / f"multi30k/raw/{split}.{source}")
        tgt = read_lines(root / f"multi30k/raw/{split}.{target}")
        if len(src) != len(tgt):
            raise DataNotFoundError(
                f"{root / 'multi30k/raw'}: {split}.{source} has {len(src)} lines and "
                f"{split}.{target} {len(tgt)}; aligned files need one line per sentence")
        return list(zip(src, tgt, strict=True))

    return Parallel(pairs("train"), pairs("val"), pairs(TEST_SETS[0]),
                    {name: pairs(name) for name in TEST_SETS[1:]})


class Translation(Task):
    """English to German on Multi30k by a conditional language model; sacrebleu BLEU, chrF."""

    uses_fitted_model = False
    own_data = "multi30k"

    name = "translation"
    description = ("Multi30k English->German: the model trained on 'source <sep> target' lines "
                   "decodes greedily; sacrebleu BLEU and chrF on test_2016_flickr, "
                   "test_2017_flickr and test_2017_mscoco")
    metrics = (MetricSpec("bleu", higher_is_better=True, chance=0.0),
               MetricSpec("chrf", higher_is_better=True),
               MetricSpec("bleu_test_2017_flickr", higher_is_better=True),
               MetricSpec("bleu_test_2017_mscoco", higher_is_better=True))

    def __init__(self, *, sentences: int | None = None):
        if sentences is not None and (not isinstance(sentences, int) or sentences < 1):
            raise ValueError(f"translation: sentences must be a positive integer (the first N "
                             f"of each test set), got {sentences!r}")
        self.sentences = sentences  # None: the whole test sets

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        result = translate_and_score(subject, load_multi30k(subject.data_dir), self.sentences,
                                     seed=seed)
        return {**result, "test_set": f"multi30k {TEST_SETS[0]}, en-de"}


def translate_and_score(subject: Subject, data: Parallel, sentences: int | None = None, *,
                        seed: int = 0) -> dict[str, Any]:
    """Train a fresh model of the subject on ``data.train``, translate the first ``sentences``
    sources of each test set greedily, score them with sacrebleu against the raw references
    (with 95% bootstrap intervals over the sentences, resampled with ``seed``), beside the
    constant and copied baselines.  The ranked test set's scores are top-level (``bleu``,
    ``chrf``, ``constant_bleu``, ...); every other set's are ``<metric>_<set>`` and under
    ``test_sets``."""
    tokenize = Tokenizer13a()
    train = [(tokenize(s).split(), tokenize(t).split()) for s, t in data.train]
    vocab = build_word_vocab([[*s, SEP, *t] for s, t in train], min_count=2)
    model = subject.new_model()
    if not model.closed_vocabulary:
        raise NotApplicable(f"{type(model).__name__} cannot generate dataset tokens")
    valid = [(tokenize(s).split(), tokenize(t).split()) for s, t in data.valid]
    model.fit(_stream(train, vocab), vocab, budget=subject.budget, valid=_stream(valid, vocab))
    constant = constant_translation([t for _, t in train], vocab)

    def score(test: list[tuple[str, str]]) -> dict[str, Any]:
        test = test[:sentences]
        hypotheses = [translate(model, vocab, tokenize(s).split(), seed=seed) for s, _ in test]
        references = [t for _, t in test]
        counts = bootstrap_counts(len(test), seed) if test else None
        scores = text_scores(hypotheses, references, counts)
        paired = scores.pop("paired", {})
        scores["bleu_lc"] = BLEU(lowercase=True, force=True).corpus_score(
            scorable(hypotheses), [references]).score
        scores.update(named_scores("constant", [constant] * len(test), references, counts,
                                   paired))
        scores.update(named_scores("copy", [s for s, _ in test], references, counts, paired))
        if counts is not None:
            scores["bootstrap"] = bootstrap_note(seed, "test sentences")
            scores["paired"] = paired_block(items_fingerprint(test), **paired)
        scores["sentences"] = len(test)
        scores["samples"] = [{"source": s, "reference": r, "output": h}
                             for (s, r), h in zip(test[:SAMPLES_KEPT], hypotheses, strict=False)]
        return scores

    result = score(data.test)
    others = {name: score(test) for name, test in data.more_tests.items()}
    for name, scores in others.items():
        result.update({f"{k}_{name}": scores[k] for k in ("bleu", "chrf", "bleu_lc")
                       if k in scores})
        for k in ("bleu_ci95", "chrf_ci95"):
            if k in scores:
                result[f"{k.removesuffix('_ci95')}_{name}_ci95"] = scores[k]
    summary = {name: {k: v for k, v in s.items() if k not in ("paired", "samples")}
               for name, s in others.items()}
    return {**result, "test_sets": summary, "constant_output": constant,
            "copy_output": "the source sentence itself", "vocab_size": len(vocab)}


def constant_translation(targets: list[list[str]], vocab: Vocab) -> str:
    """The output every source gets from the baseline a translation model must beat: what the
    training targets' counts write with no source (:func:`~lmladder.tasks.continuation.
    constant_output`), as long as the median target, up to a boundary if it writes one --
    "Ein Mann in einem <unk> ." on Multi30k (BLEU 1.92 on test_2016_flickr, ``<unk>`` one
    token that matches nothing)."""
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
