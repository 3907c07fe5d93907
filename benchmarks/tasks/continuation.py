"""Continuation: how close does a model's text come to what the test text really says next?

For ``prompts`` test lines (chosen with the seed) long enough to hold a ``prompt_tokens`` prefix
and a ``new_tokens`` continuation, the model generates ``new_tokens`` tokens after the prefix
twice: greedily, and by top-k sampling (k = ``top_k``, seed = the task seed + the prompt's
index).  Each generation is scored against the true continuation with sacrebleu's corpus BLEU
and chrF (signatures recorded), and for diversity with distinct-1/2 (distinct n-grams over all
n-grams of all generations) and the repetition rate (the share of generated tokens that repeat
an earlier token of the same generation).  The same scores of a constant output -- what the training
counts write with no prompt, "the <unk> of the <unk> ..." on PTB, given for every prompt
(:func:`constant_output`) -- are one baseline (``constant_bleu``, ``constant_chrf``): a model
below it has learned less than the most frequent n-grams.  The other is copying: the prompt's
last ``new_tokens`` tokens given as the continuation (``copy_bleu``, ``copy_chrf``), what a model
that only repeats its context would score.  ``<unk>`` is scored as one token (:func:`scorable`).
A few samples are kept as text for the report.

BLEU, chrF and repetition carry 95% intervals (``<metric>_ci95``): a paired percentile bootstrap
over the prompts (:data:`~lmladder.significance.RESAMPLES` resamples drawn with the task
seed, the same resamples for greedy, sampled, constant and copied output), each resample's corpus
score recomputed by sacrebleu from its per-segment sufficient statistics.  The resample count and
seed are recorded (``bootstrap``), and the statistics themselves (``paired``), so a report can
test two rows against each other on the same prompts (:mod:`lmladder.significance`).

Open-vocabulary models (a pretrained model with its own tokenizer) cannot generate dataset
tokens; for them the task is not applicable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sacrebleu

from lmladder.api import Vocab
from lmladder.corpus import UNK
from lmladder.significance import item_statistics, scores_of
from lmladder.tasks import (
    MetricSpec,
    NotApplicable,
    Subject,
    Task,
    bootstrap_counts,
    bootstrap_note,
    items_fingerprint,
    paired_block,
    paired_entry,
    percentile_interval,
)

SAMPLES_KEPT = 3


class Continuation(Task):
    """Continue test prefixes greedily and by sampling; BLEU/chrF against the real text."""

    name = "continuation"
    description = ("continue 20-token test prefixes by 20 tokens (greedy and top-k); BLEU, chrF "
                   "against the true text, distinct-1/2, repetition")
    # greedy BLEU first: it ranks the task.  chrF weights recall over precision (beta 2), so
    # many long random words score high: on PTB the uniform model's greedy chrF is 20.9 against
    # the LSTM's 5.9 and KN5's 5.7, while its BLEU is 0.04 against 1.75 and 0.64
    metrics = (MetricSpec("greedy_bleu", higher_is_better=True),
               MetricSpec("greedy_chrf", higher_is_better=True),
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
        paired: dict[str, Any] = {}
        for kind, generated in (("greedy", greedy), ("sampled", sampled)):
            out.update(named_scores(kind, [_text(vocab, g) for g in generated], refs, counts,
                                    paired, signatures=True))
            out[f"{kind}_distinct_1"] = distinct(generated, 1)
            out[f"{kind}_distinct_2"] = distinct(generated, 2)
            out[f"{kind}_repetition"] = repetition(generated)
            if counts is not None:
                out[f"{kind}_repetition_ci95"] = repetition_interval(generated, counts)
        constant = constant_output(subject.data.train.ids, vocab.boundary_id, self.new_tokens)
        out.update(named_scores("constant", [_text(vocab, constant)] * len(pairs), refs,
                                counts, paired))
        out["constant_output"] = _text(vocab, constant)
        copies = [_text(vocab, p[-self.new_tokens:]) for p, _ in pairs]
        out.update(named_scores("copy", copies, refs, counts, paired))
        out["copy_output"] = f"the prompt's last {self.new_tokens} tokens"
        if counts is not None:
            out["bootstrap"] = bootstrap_note(seed, "prompts")
            out["paired"] = paired_block(items_fingerprint(pairs), **paired)
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
    intervals ``bleu_ci95`` and ``chrf_ci95`` and, under ``paired``, the per-segment
    statistics a paired test between two systems needs (:mod:`lmladder.significance`).

    Hypotheses are model tokens joined by spaces; BLEU's 13a tokenizer splits them into the same
    tokens again, so its "forgot to detokenize?" warning is silenced (``force``).  ``<unk>`` is
    scored as one token, on both sides (:func:`scorable`)."""
    hypotheses, references = scorable(hypotheses), scorable(references)
    bleu, chrf = sacrebleu.metrics.BLEU(force=True), sacrebleu.metrics.CHRF()
    out: dict[str, Any] = {"bleu": bleu.corpus_score(hypotheses, [references]).score,
                           "chrf": chrf.corpus_score(hypotheses, [references]).score,
                           "bleu_signature": str(bleu.get_signature()),
                           "chrf_signature": str(chrf.get_signature())}
    if counts is not None:
        paired = {}
        for kind in ("bleu", "chrf"):
            stats = item_statistics(kind, hypotheses, references)
            out[f"{kind}_ci95"] = percentile_interval(scores_of(kind, counts @ stats, len(stats)))
            paired[kind] = paired_entry(kind, stats)
        out["paired"] = paired
    return out


UNK_MARK = "\ue000"  # <unk> as sacrebleu scores it: one character, one token


def scorable(texts: list[str]) -> list[str]:
    """Texts as BLEU and chrF score them: ``<unk>`` becomes one private-use character, so it
    is one token (13a would split it into ``< unk >``, three tokens and three n-gram matches)
    that matches only an ``<unk>`` of the reference."""
    return [t.replace(UNK, UNK_MARK) for t in texts]


def named_scores(name: str, hypotheses: list[str], references: list[str],
                 counts: np.ndarray | None, paired: dict[str, Any], *,
                 signatures: bool = False) -> dict[str, Any]:
    """:func:`text_scores` of one set of outputs (greedy, sampled, a baseline's) keyed
    ``<name>_<metric>``, sacrebleu's signatures only with ``signatures``; their per-segment
    statistics go into ``paired`` under the same keys."""
    scores = text_scores(hypotheses, references, counts)
    paired.update({f"{name}_{k}": v for k, v in scores.pop("paired", {}).items()})
    return {f"{name}_{k}": v for k, v in scores.items()
            if signatures or not k.endswith("signature")}


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
