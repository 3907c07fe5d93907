"""Quality and speed of the n-gram family on PTB, next to KenLM's figures and nltk.lm measured here.

Usage (corpora from ``--data-dir`` or ``$LMLADDER_DATA``)::

    python -m lmladder.perf.ngram --data-dir DIR
    python -m lmladder.perf.ngram --nltk-score-tokens 200 --nltk-train-tokens 200000
    python -m lmladder.perf.ngram --skip-nltk

What is timed
-------------
* ours: ``fit`` on the training split (median of ``--repeats``), and ``token_logprobs`` over the
  whole test split (82,430 tokens for PTB; median of ``--repeats`` after one warm-up); perplexity
  from :func:`lmladder.scoring.score_split` with the default context policy.
* nltk.lm (``KneserNeyInterpolated(3)``, ``WittenBellInterpolated(3)``), in this run: ``fit`` on
  the same training lines, padded the nltk way (``padded_everygram_pipeline``:
  ``<s> <s> .. </s> </s>``), everygram generation included; scoring = ``model.score(word, context)``
  for the first ``--nltk-score-tokens`` test tokens (words and one ``</s>`` per line, context the
  two previous padded tokens), which is all nltk can do in reasonable time (its Kneser-Ney scores
  ~8 tokens/s).
  The ratios compare ours with nltk on the same training tokens (ours refit on the subset when
  ``--nltk-train-tokens`` is given) and on scoring throughput (ours over the full test split).
* KenLM is not run here; its figures are the anchors measured on this kind of machine
  (the project's shared ANCHORS.md): ``lmplz -o 5`` 141.19, ``-o 3`` 148.28 on these 82,430 tokens.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import time

import numpy as np

from lmladder.api import Budget
from lmladder.baselines.ngram import NGramLM
from lmladder.corpus import Dataset
from lmladder.data import load_dataset
from lmladder.scoring import score_split
from lmladder.timing import peak_rss_mib, reset_peak_rss

KENLM = {5: {"ppl": 141.19, "fit_s": 2.37, "query_tok_s": 3.05e6},
         3: {"ppl": 148.28, "fit_s": 5.41, "query_tok_s": 3.75e6}}
NLTK_ANCHORS = {"KneserNeyInterpolated": {"ppl_5000": 358.0, "fit_s": 24.3, "tok_s": 7.8},
                "WittenBellInterpolated": {"ppl_5000": 173.4, "fit_s": 26.3, "tok_s": 4960.0}}

MODELS = [  # (label, config)
    ("KN5 (modified)", {"order": 5, "smoothing": "modified-kneser-ney"}),
    ("KN3 (modified)", {"order": 3, "smoothing": "modified-kneser-ney"}),
    ("KN5 (one discount)", {"order": 5, "smoothing": "kneser-ney"}),
    ("KN3 (one discount)", {"order": 3, "smoothing": "kneser-ney"}),
    ("Absolute discounting 3", {"order": 3, "smoothing": "absolute-discounting"}),
    ("Absolute discounting 5", {"order": 5, "smoothing": "absolute-discounting"}),
    ("Witten-Bell 3", {"order": 3, "smoothing": "witten-bell"}),
    ("Witten-Bell 5", {"order": 5, "smoothing": "witten-bell"}),
    ("Add-one 2", {"order": 2, "smoothing": "add-k", "k": 1.0}),
    ("KN5 (modified), across lines", {"order": 5, "smoothing": "modified-kneser-ney",
                                      "cross_boundary": True}),
]


def time_ours(ds: Dataset, config: dict, *, repeats: int = 3, train_tokens: int | None = None
              ) -> dict:
    """Fit ``NGramLM(**config)`` ``repeats`` times and score the test split; figures as a dict
    (``peak_rss_mib``: the process's peak resident memory while fitting, dataset included)."""
    gc.collect()
    fits, model = [], None
    budget = Budget(tokens=train_tokens)
    reset_peak_rss()
    for _ in range(repeats):
        model = NGramLM(**config)
        t = time.perf_counter()
        model.fit(ds.train.ids, ds.vocab, budget=budget)
        fits.append(time.perf_counter() - t)
    peak = peak_rss_mib()
    metrics, logprobs = score_split(model, ds.test, ds.vocab, name=str(config))
    scores = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.token_logprobs(ds.test.ids)
        scores.append(time.perf_counter() - t)
    return {"ppl": metrics.ppl, "logprobs": logprobs,
            "fit_s": statistics.median(fits), "fit_spread": (min(fits), max(fits)),
            "score_tok_s": len(ds.test.ids) / statistics.median(scores),
            "params": model.num_parameters(), "peak_rss_mib": peak}


def nltk_lines(ds: Dataset, split: str, max_tokens: int | None = None) -> list[list[str]]:
    """The split's lines as word lists (boundary removed), cut after ``max_tokens`` tokens."""
    words = ds.vocab.decode(ds.splits[split].ids[:max_tokens])
    lines, cur = [], []
    for w in words:
        if w == ds.vocab.boundary:
            lines.append(cur)
            cur = []
        else:
            cur.append(w)
    if cur:
        lines.append(cur)
    return lines


def time_nltk(ds: Dataset, cls_name: str, order: int, *, train_tokens: int | None,
              score_tokens: int) -> dict:
    """Fit nltk.lm's ``cls_name`` on the training lines and score the first test tokens."""
    import nltk.lm
    from nltk.lm.preprocessing import padded_everygram_pipeline

    lines = nltk_lines(ds, "train", train_tokens)
    t = time.perf_counter()
    grams, vocab_text = padded_everygram_pipeline(order, lines)
    lm = getattr(nltk.lm, cls_name)(order)
    lm.fit(grams, vocab_text)
    fit_s = time.perf_counter() - t

    queries = []  # (word, context) for the first score_tokens test tokens
    for line in nltk_lines(ds, "test"):
        padded = ["<s>"] * (order - 1) + line + ["</s>"]
        for i in range(order - 1, len(padded)):
            queries.append((padded[i], tuple(padded[i - order + 1 : i])))
        if len(queries) >= score_tokens:
            break
    queries = queries[:score_tokens]
    t = time.perf_counter()
    probs = [lm.score(w, c) for w, c in queries]
    score_s = time.perf_counter() - t
    logs = np.log(np.maximum(probs, 1e-300))
    del lm
    gc.collect()
    return {"fit_s": fit_s, "score_tok_s": len(queries) / score_s, "tokens": len(queries),
            "ppl": math.exp(-logs.mean()), "train_lines": len(lines)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None, help="folder holding ptb/ (else $LMLADDER_DATA)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of our fit and scoring")
    ap.add_argument("--nltk-train-tokens", type=int, default=None,
                    help="train nltk (and ours, for the ratio) on this many tokens (default all)")
    ap.add_argument("--nltk-score-tokens", type=int, default=100,
                    help="test tokens nltk's Kneser-Ney scores (Witten-Bell scores 20x as many)")
    ap.add_argument("--skip-nltk", action="store_true", help="only our models")
    args = ap.parse_args(argv)

    ds = load_dataset("ptb", args.data_dir)
    print(f"PTB: {ds.train.num_tokens:,} training tokens, {ds.test.num_tokens:,} test tokens, "
          f"|V| = {len(ds.vocab):,}; {args.repeats} repeats, medians\n")
    print(f"{'model':32s} {'test ppl':>9s} {'fit s':>7s} {'score tok/s':>12s} "
          f"{'parameters':>11s} {'peak RSS MiB':>12s}")
    ours = {}
    for label, config in MODELS:
        r = time_ours(ds, config, repeats=args.repeats)
        ours[label] = r
        print(f"{label:32s} {r['ppl']:9.2f} {r['fit_s']:7.2f} {r['score_tok_s']:12,.0f} "
              f"{r['params']:11,d} {r['peak_rss_mib']:12,.0f}", flush=True)
    print("\nKenLM anchors (ANCHORS.md, lmplz + query on this kind of machine):")
    for order in (5, 3):
        k, o = KENLM[order], ours[f"KN{order} (modified)"]
        print(f"  KN{order}: KenLM ppl {k['ppl']:.2f}, ours {o['ppl']:.2f}; KenLM estimation "
              f"{k['fit_s']} s, ours {o['fit_s']:.2f} s; KenLM query {k['query_tok_s']:,.0f} "
              f"tok/s, ours {o['score_tok_s']:,.0f} tok/s")
    kn5, kn3 = ours["KN5 (modified)"], ours["KN3 (modified)"]
    print("\nBars:")
    for what, value, ok in (
            ("KN5 test ppl in [140, 150]", f"{kn5['ppl']:.2f}", 140 <= kn5["ppl"] <= 150),
            ("KN3 test ppl in [145, 160]", f"{kn3['ppl']:.2f}", 145 <= kn3["ppl"] <= 160),
            ("KN5 fit <= 30 s", f"{kn5['fit_s']:.2f} s", kn5["fit_s"] <= 30),
            ("KN5 scoring >= 300,000 tok/s", f"{kn5['score_tok_s']:,.0f}",
             kn5["score_tok_s"] >= 3e5)):
        print(f"  {what}: {value} {'PASS' if ok else 'FAIL'}")
    if args.skip_nltk:
        return

    print("\nnltk.lm, measured in this run "
          f"(train on {'all' if args.nltk_train_tokens is None else f'{args.nltk_train_tokens:,}'}"
          f" training tokens):")
    for cls_name, label, score_tokens in (
            ("KneserNeyInterpolated", "KN3 (modified)", args.nltk_score_tokens),
            ("WittenBellInterpolated", "Witten-Bell 3", 20 * args.nltk_score_tokens)):
        n = time_nltk(ds, cls_name, 3, train_tokens=args.nltk_train_tokens,
                      score_tokens=score_tokens)
        mine = ours[label]
        config = dict(MODELS)[label]
        if args.nltk_train_tokens is not None:
            mine = time_ours(ds, config, repeats=args.repeats, train_tokens=args.nltk_train_tokens)
        same = mine["logprobs"][: n["tokens"]]
        a = NLTK_ANCHORS[cls_name]
        print(f"  {cls_name}(3): fit {n['fit_s']:.1f} s on {n['train_lines']:,} lines "
              f"(anchor {a['fit_s']} s); scored {n['tokens']:,} test tokens at "
              f"{n['score_tok_s']:,.1f} tok/s (anchor {a['tok_s']:,}); ppl on them "
              f"{n['ppl']:.1f} (ours {label}: {math.exp(-np.mean(same)):.1f})")
        print(f"    ours {label} is {n['fit_s'] / mine['fit_s']:,.0f}x faster to train "
              f"({mine['fit_s']:.2f} s) and {mine['score_tok_s'] / n['score_tok_s']:,.0f}x faster "
              f"to score ({mine['score_tok_s']:,.0f} tok/s)", flush=True)


if __name__ == "__main__":
    main()
