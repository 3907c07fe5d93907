"""Entropy-based pruning of backoff n-gram models (Stolcke 1998), and renormalising backoff weights.

Reference: A. Stolcke, "Entropy-based pruning of backoff language models", Proc. DARPA Broadcast
News Transcription and Understanding Workshop, 1998 (arXiv cs/0006025); the reference
implementation is SRILM's ``ngram -prune THRESHOLD``, whose definition this module follows.

Backoff weights
---------------
In a backoff model a context ``h`` with listed continuations ``L(h)`` has the weight

    bow(h) = num(h) / den(h),   num(h) = 1 - sum_{w in L(h)} p(w | h),
                                den(h) = 1 - sum_{w in L(h)} p(w | h')

(``h'``: ``h`` without its oldest token): its unlisted words share what the listed ones leave,
in proportion to the lower order, so every next-token distribution sums to one.
:func:`recompute_backoffs` sets every weight from the listed probabilities this way (SRILM's
``recomputeBOWs``); it renormalises a model after n-grams were removed.

The pruning criterion
---------------------
Removing the n-gram ``h w`` gives ``w`` the backed-off probability ``bow'(h) p(w | h')`` with
``bow'(h) = (num(h) + p(w | h)) / (den(h) + p(w | h'))``, and changes nothing outside context
``h``.  The relative entropy of the model without it from the model with it is (Stolcke, eq. 9)

    D = -p(h) [ p(w|h) (ln p(w|h') + ln bow'(h) - ln p(w|h)) + num(h) (ln bow'(h) - ln bow(h)) ]

in nats, where ``p(h)`` is the model's own probability of the history by the chain rule (a leading
sentence start ``<s>`` counts with the probability of ``</s>``, as in SRILM).  The n-gram is
pruned when the relative increase in perplexity it causes, ``exp(D) - 1``, is below the threshold
(about ``D`` itself for the small thresholds used, 1e-9 to 1e-6).  As in SRILM, every n-gram of a
context is judged against the unpruned context (removals are assumed independent); orders go from
the highest down; an n-gram that is the context of a kept longer n-gram stays; unigrams stay; and
all backoff weights are recomputed at the end.  One addition: an n-gram that is the *suffix* of a
kept longer n-gram stays too, because lmladder's tables (and KenLM's) address an n-gram through
its suffix.  A threshold of 0 prunes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmladder.baselines.ngram_backoff import BackoffTables


@dataclass
class ContextMass:
    """The n-grams of one order ``j >= 2`` seen from their contexts (rows of order ``j - 1``).

    ``context``: int64 context row of each n-gram; ``p``/``q``: float64 ``p(w | h)`` and
    ``p(w | h')`` of each n-gram; ``num``/``den``: float64 per context row, the numerator and
    denominator of its backoff weight (1 and 1 for a context without listed continuations).
    """

    context: np.ndarray
    p: np.ndarray
    q: np.ndarray
    num: np.ndarray
    den: np.ndarray


def context_mass(tables: BackoffTables, j: int) -> ContextMass:
    """:class:`ContextMass` of order ``j`` (``2 <= j <= order``) of a backoff (not flat) model.

    ``p(w | h')`` is the listed probability of the n-gram's suffix: tables are suffix-closed and
    an n-gram's key holds its suffix's row (``key // V``)."""
    context = tables.rows_of(tables.ngram_tokens(j)[:, :-1])
    p = np.exp(tables.logp[j - 1])
    q = np.exp(tables.logp[j - 2][tables.keys[j - 1] // tables.vocab_size])
    size = len(tables.keys[j - 2])
    num = 1.0 - np.bincount(context, weights=p, minlength=size)
    den = 1.0 - np.bincount(context, weights=q, minlength=size)
    return ContextMass(context, p, q, num, den)


def recompute_backoffs(tables: BackoffTables) -> BackoffTables:
    """``tables`` with every backoff weight set to ``ln(num / den)`` (module docstring), so that
    next-token distributions sum to one; contexts without continuations get 0 (weight 1), and a
    context whose listed words take all the mass gets -inf."""
    bow = [b.copy() for b in tables.bow]
    for j in range(2, tables.order + 1):
        m = context_mass(tables, j)
        listed = np.bincount(m.context, minlength=len(m.num)) > 0
        num, ok = np.maximum(m.num, 0.0), listed & (m.den > 0)
        with np.errstate(divide="ignore"):
            bow[j - 2] = np.where(ok, np.log(num) - np.log(np.where(ok, m.den, 1.0)), 0.0)
    return BackoffTables(tables.vocab_size, tables.keys, tables.logp, bow, flat=tables.flat)


def history_logprobs(tables: BackoffTables) -> list[np.ndarray]:
    """``ln p(h)`` of every listed n-gram ``h`` as a history, per order (index ``j - 1``), by the
    chain rule over its listed prefixes; the boundary as a first word (``<s>``) counts with its
    unigram probability, which is that of ``</s>`` (SRILM's ``computeContextProb``)."""
    out = [tables.logp[0]]
    for j in range(2, tables.order):
        prefix = tables.rows_of(tables.ngram_tokens(j)[:, :-1])
        out.append(out[-1][prefix] + tables.logp[j - 1])
    return out


def entropy_increase(tables: BackoffTables, j: int, history: np.ndarray | None = None,
                     ) -> np.ndarray:
    """Stolcke's ``D`` (nats, float64, one per order-``j`` n-gram, ``j >= 2``): the relative
    entropy caused by removing that n-gram alone (module docstring).  ``history`` is
    ``history_logprobs(tables)[j - 2]`` when the caller has it already."""
    if history is None:
        history = history_logprobs(tables)[j - 2]
    m = context_mass(tables, j)
    num, den = m.num[m.context], m.den[m.context]
    old_bow = tables.bow[j - 2][m.context]
    new_bow = np.log(num + m.p) - np.log(den + m.q)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = m.p * (np.log(m.q) + new_bow - np.log(m.p)) + np.where(
            num > 0, num * (new_bow - old_bow), 0.0)
    # A relative entropy is >= 0; where it is exactly 0 (a context listing every word) the
    # subtraction above leaves rounding noise of either sign (-6e-17 with numpy 2.4).
    return np.maximum(-np.exp(history[m.context]) * change, 0.0)


def prune(tables: BackoffTables, threshold: float) -> BackoffTables:
    """Stolcke-prune ``tables`` at ``threshold`` (relative perplexity increase per n-gram; see
    the module docstring) and recompute the backoff weights.  ``threshold <= 0`` returns
    ``tables`` unchanged."""
    if threshold <= 0 or tables.order < 2:
        return tables
    if tables.flat:
        raise ValueError("add-k tables have no backoff form to prune")
    v, n = tables.vocab_size, tables.order
    history = history_logprobs(tables)
    keep = [np.ones(len(k), dtype=bool) for k in tables.keys]
    for j in range(n, 1, -1):
        keep[j - 1] = ~(np.expm1(entropy_increase(tables, j, history[j - 2])) < threshold)
        if j < n:  # the contexts and suffixes of kept longer n-grams stay
            above = keep[j]
            keep[j - 1][tables.rows_of(tables.ngram_tokens(j + 1)[above, :-1])] = True
            keep[j - 1][tables.keys[j][above] // v] = True
    return recompute_backoffs(tables.select(keep))
