"""Continuation: how close does a model's text come to what the test text really says next?

For ``prompts`` test lines (chosen with the seed) long enough to hold a ``prompt_tokens`` prefix
and a ``new_tokens`` continuation, the model generates ``new_tokens`` tokens after the prefix
twice: greedily, and by top-k sampling (k = ``top_k``, seed = the task seed + the prompt's
index).  Each generation is scored against the true continuation with sacrebleu's corpus BLEU
and chrF (signatures recorded), and for diversity with distinct-1/2 (distinct n-grams over all
n-grams of all generations) and the repetition rate (the share of generated tokens that repeat
an earlier token of the same generation).  The same scores of a constant output -- what the training
counts write with no prompt, "the <unk> of the <unk> ..." on PTB, given for every prompt
(:func:`constant_output`) -- are the baseline (``constant_bleu``, ``constant_chrf``): a model
below it has learned less than the most frequent n-grams.  A
few samples are kept as text for the report.

BLEU, chrF and repetition carry 95% intervals (``<metric>_ci95``): a paired percentile bootstrap
over the prompts (:data:`~lmladder.tasks.BOOTSTRAP_RESAMPLES` resamples drawn with the task
seed, the same resamples for greedy, sampled and constant output), each resample's corpus score
recomputed by sacrebleu from its per-segment sufficient statistics (:func:`corpus_interval`).
The resample count and seed are recorded (``bootstrap``).

Open-vocabulary models (a pretrained model with its own tokenizer) cannot generate dataset
tokens; for them the task is not applicable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sacrebleu

from lmladder.api import Vocab
from lmladder.tasks import (
    MetricSpec,
    NotApplicable,
    Subject,
    Task,
    bootstrap_counts,
    bootstrap_note,
    percentile_interval,
)

SAMPLES_KEPT = 3


class Continuation(Task):
    """Continue test prefixes greedily and by sampling; BLEU/chrF against the real text."""

    name = "continuation"
    description = ("continue 20-token test prefixes by 20 tokens (greedy and top-k); BLEU, chrF "
                   "against the true text, distinct-1/2, repetition")
    # greedy chrF first: it ranks the task (corpus BLEU of 20 tokens sits near 0)
    metrics = (MetricSpec("greedy_chrf", higher_is_better=True),
               MetricSpec("greedy_bleu", higher_is_better=True),
               MetricSpec("sampled_chrf", higher_is_better=True),
               MetricSpec("sampled_bleu", higher_is_better=True),
               MetricSpec("sampled_distinct_2", higher_is_better=True),
               MetricSpec("greedy_repetition", higher_is_better=False))

    def __init__(self, *, prompts: int = 100, prompt_tokens: int = 20, new_tokens: int = 20,
                 top_k: int = 40):
        if min(prompts, prompt_tokens, new_tokens, top_k) < 1:
            raise ValueError("continuation needs prompts, prompt_tokens, new_tokens, top_k >= 1")
        self.prompts, self.prompt_tokens = prompts, prompt_tokens
        self.new_tokens, self.top_k = new_tokens, top_k

    def items(self, ids: np.ndarray, boundary_id: int, seed: int) -> list[tuple[np.ndarray,
                                                                                 np.ndarray]]:
        """(prefix, true continuation) pairs: prefixes start at a line start, in seeded order."""
        need = self.prompt_tokens + self.new_tokens
        starts = np.concatenate([[0], np.flatnonzero(ids == boundary_id) + 1])
        starts = starts[starts + need <= len(ids)]
        chosen = np.random.default_rng(seed).permutation(starts)[: self.prompts]
        return [(ids[s : s + self.prompt_tokens], ids[s + self.prompt_tokens : s + need])
                for s in chosen]

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        model, vocab = subject.model, subject.data.vocab
        if not model.closed_vocabulary:
            raise NotApplicable(f"{type(model).__name__} cannot generate dataset tokens")
        pairs = self.items(subject.data.test.ids, vocab.boundary_id, seed)
        greedy = [model.generate(p, self.new_tokens, top_k=1, seed=seed) for p, _ in pairs]
        sampled = [model.generate(p, self.new_tokens, top_k=self.top_k, seed=seed + i)
                   for i, (p, _) in enumerate(pairs)]
        refs = [_text(vocab, truth) for _, truth in pairs]
        counts = bootstrap_counts(len(pairs), seed) if pairs else None
        out: dict[str, Any] = {"prompts": len(pairs), "seed": seed}
        for kind, generated in (("greedy", greedy), ("sampled", sampled)):
            out.update({f"{kind}_{k}": v for k, v in text_scores(
                [_text(vocab, g) for g in generated], refs, counts).items()})
            out[f"{kind}_distinct_1"] = distinct(generated, 1)
            out[f"{kind}_distinct_2"] = distinct(generated, 2)
            out[f"{kind}_repetition"] = repetition(generated)
            if counts is not None:
                out[f"{kind}_repetition_ci95"] = repetition_interval(generated, counts)
        constant = constant_output(subject.data.train.ids, vocab.boundary_id, self.new_tokens)
        out.update({f"constant_{k}": v for k, v in text_scores(
            [_text(vocab, constant)] * len(pairs), refs, counts).items()
            if not k.endswith("signature")})
        out["constant_output"] = _text(vocab, constant)
        if counts is not None:
            out["bootstrap"] = bootstrap_note(seed, "prompts")
        out["samples"] = [{"prompt": _text(vocab, p), "truth": refs[i],
                           "greedy": _text(vocab, greedy[i]), "sampled": _text(vocab, sampled[i])}
                          for i, (p, _) in enumerate(pairs[:SAMPLES_KEPT])]
        return out


def constant_output(train: np.ndarray, boundary_id: int, length: int) -> np.ndarray:
    """The baseline a generator must beat: what the training counts write with no prompt at all,
    the same for every prompt.  From a line start it takes the word that most often follows a
    boundary, then again and again the word that most often follows the last two (ties: the
    smallest id); a pair never followed by anything starts a line again.  On PTB this is
    "the <unk> of the <unk> of ...": the frequent n-grams a BLEU score rewards."""
    stream = np.concatenate([[boundary_id], np.asarray(train, dtype=np.int64)])
    v = int(stream.max()) + 1
    pairs, pair_counts = np.unique(stream[:-1] * v + stream[1:], return_counts=True)
    triples, triple_counts = np.unique((stream[:-2] * v + stream[1:-1]) * v + stream[2:],
                                       return_counts=True)

    def most_frequent_after(keys, counts, prefix: int) -> int | None:
        lo, hi = np.searchsorted(keys, [prefix * v, (prefix + 1) * v])
        return None if lo == hi else int(keys[lo + np.argmax(counts[lo:hi])] % v)

    first = most_frequent_after(pairs, pair_counts, boundary_id)
    out, context = [], (boundary_id, boundary_id)
    while len(out) < length:
        nxt = most_frequent_after(triples, triple_counts, context[0] * v + context[1])
        if nxt is None or context == (boundary_id, boundary_id):  # a line (re)starts
            nxt, context = first, (boundary_id, first)
        else:
            context = (context[1], nxt)
        out.append(nxt)
    return np.asarray(out, dtype=np.int64)


def _text(vocab: Vocab, ids) -> str:
    """Running text on one line (boundaries become spaces or ' / ' between lines)."""
    return vocab.detokenize(ids).replace("\n", " / ").strip()


def text_scores(hypotheses: list[str], references: list[str],
                counts: np.ndarray | None = None) -> dict[str, Any]:
    """sacrebleu corpus BLEU and chrF (0-100) with their signatures, and with ``counts`` (from
    :func:`~lmladder.tasks.bootstrap_counts`, one column per segment) their 95% bootstrap
    intervals ``bleu_ci95`` and ``chrf_ci95`` (:func:`corpus_interval`).

    Hypotheses are model tokens joined by spaces; BLEU's 13a tokenizer splits them into the same
    tokens again, so its "forgot to detokenize?" warning is silenced (``force``)."""
    bleu, chrf = sacrebleu.metrics.BLEU(force=True), sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    out = {"bleu": b.score, "chrf": c.score, "bleu_signature": str(bleu.get_signature()),
           "chrf_signature": str(chrf.get_signature())}
    if counts is not None:
        out["bleu_ci95"] = corpus_interval(bleu, hypotheses, references, counts)
        out["chrf_ci95"] = corpus_interval(chrf, hypotheses, references, counts)
    return out


def corpus_interval(metric, hypotheses: list[str], references: list[str],
                    counts: np.ndarray) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of sacrebleu ``metric``'s corpus score.

    sacrebleu's corpus score is a function of per-segment count statistics summed over the
    corpus (BLEU: lengths and n-gram matches; chrF: character n-gram counts), which it exposes
    for its own significance tests (``_extract_corpus_statistics``,
    ``_compute_score_from_stats``).  The segments' statistics are extracted once; resample
    ``b``'s corpus statistics are ``counts[b] @ stats``, scored by sacrebleu as a corpus would
    be -- exactly ``corpus_score`` of the resampled segments, at the cost of one score per
    resample."""
    stats = np.asarray(metric._extract_corpus_statistics(hypotheses, [references]),
                       dtype=np.int64)  # (segments, statistics)
    totals = counts @ stats  # (resamples, statistics)
    return percentile_interval([metric._compute_score_from_stats(t.tolist()).score
                                for t in totals])


def distinct(generations: list[np.ndarray], n: int) -> float:
    """Distinct n-grams / all n-grams over all generations (Li et al. 2016)."""
    grams = [tuple(g[i : i + n]) for g in generations for i in range(len(g) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition(generations: list[np.ndarray]) -> float:
    """The share of generated tokens equal to an earlier token of the same generation."""
    total = sum(len(g) for g in generations)
    repeats = sum(len(g) - len(set(g.tolist())) for g in generations)
    return repeats / total if total else 0.0



def repetition_interval(generations: list[np.ndarray], counts: np.ndarray) -> tuple[float, float]:
    """The 95% bootstrap interval of :func:`repetition` over generations resampled by
    ``counts`` (one column per generation): repeated tokens over all tokens, per resample."""
    lengths = np.array([len(g) for g in generations], dtype=np.float64)
    repeats = np.array([len(g) - len(set(g.tolist())) for g in generations], dtype=np.float64)
    total = counts @ lengths
    shares = np.divide(counts @ repeats, total, out=np.zeros_like(total), where=total > 0)
    return percentile_interval(shares)
