"""HMM benchmarks: EM speed against hmmlearn, the PTB perplexity-vs-states curve, the synthetic
oracle gap.

    python -m lmladder.perf.hmm --data-dir DIR                          # everything
    python -m lmladder.perf.hmm --data-dir DIR --quick                  # smaller budgets
    python -m lmladder.perf.hmm --data-dir DIR --only speed --out r.json

speed
    Seconds per EM iteration of our torch backend and of ``hmmlearn.hmm.CategoricalHMM`` on the
    same sentences (the first ``--speed-tokens`` PTB training tokens, as in ANCHORS.md) from the
    same starting parameters, for each K of ``--speed-states`` (ours on ``--threads`` torch
    threads, default 1, as hmmlearn's C code is single-threaded); their ratio; and the extra peak
    memory (resident set) per training token.  Each measurement runs in a fresh process so peak
    memory is its own.  Ours: median of ``--repeats`` iterations after one warm-up iteration
    (which also packs the sentences).  hmmlearn: median of ``--repeats`` iterations for K <= 64,
    one iteration above (it takes minutes).
quality
    Test perplexity on PTB (all 82,430 test tokens, lines scored independently -- for this model
    both context policies give the same numbers) for each K of ``--states``, each trained by EM
    (or ``--trainer adam``, one step per ``--batch-tokens`` chunk) on the full training split
    under ``--seconds`` of wall-clock time and at most ``--iterations`` passes, keeping the
    parameters with the best validation perplexity.
    With ``--grow-from G``, models with K > G start with G states and split every state in two
    (after ``--stage-iterations`` EM iterations per stage) until K; all stages share the budget.
synthetic
    The default synthetic source (16 states + end state, 400 words, 200k training tokens): test
    perplexity of a 32-state HMM against the source's own (the oracle).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import resource
import statistics
import sys
import time

import numpy as np

from lmladder.api import Budget, ContextPolicy
from lmladder.data import load_dataset
from lmladder.scoring import score_split


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _time_em(backend: str, states: int, tokens: int, repeats: int, data_dir, impl: str,
             threads: int) -> dict:
    """Runs in a child process: seconds per EM iteration and peak memory of one backend."""

    from lmladder.baselines.hmm import HMM
    from lmladder.baselines.hmm_hmmlearn import HmmlearnHMM

    data = load_dataset("ptb", data_dir)
    train = data.train.ids[:tokens]
    base_rss = _peak_rss_bytes()
    if backend == "torch":
        model = HMM(states=states, tol=0.0, max_iterations=repeats + 1, threads=threads)
        report = model.fit(train, data.vocab, budget=Budget(steps=repeats + 1))
        cumulative = [0.0] + [h["seconds"] for h in report.history]
        times = np.diff(cumulative)[1:]  # drop the warm-up iteration (packing, first calls)
    else:
        model = HmmlearnHMM(states=states, tol=0.0, max_iterations=repeats, implementation=impl)
        report = model.fit(train, data.vocab, budget=Budget(steps=repeats))
        cumulative = [0.0] + [h["seconds"] for h in report.history]
        times = np.diff(cumulative)
    return {
        "backend": backend if backend == "torch" else f"hmmlearn-{impl}",
        "states": states,
        "tokens": len(train),
        "iterations_timed": len(times),
        "seconds_per_iteration": float(statistics.median(times)),
        "spread": [float(min(times)), float(max(times))],
        "extra_peak_rss_bytes_per_token": (_peak_rss_bytes() - base_rss) / len(train),
        "torch_threads": threads if backend == "torch" else None,
    }


def _in_child(*args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_time_em, args)


def bench_speed(args) -> list[dict]:
    rows = []
    for k in args.speed_states:
        ours = _in_child(
            "torch", k, args.speed_tokens, args.repeats, args.data_dir, "", args.threads
        )
        theirs_repeats = args.repeats if k <= 64 else 1
        theirs = _in_child(
            "hmmlearn", k, args.speed_tokens, theirs_repeats, args.data_dir, args.hmmlearn_impl,
            args.threads,
        )
        ratio = theirs["seconds_per_iteration"] / ours["seconds_per_iteration"]
        for r in (ours, theirs):
            print(
                f"speed  K={k:<5d} {r['backend']:<17s} {r['seconds_per_iteration']:8.3f} s/iter "
                f"(median of {r['iterations_timed']}, range {r['spread'][0]:.3f}-"
                f"{r['spread'][1]:.3f})  {r['tokens'] / r['seconds_per_iteration']:>10,.0f} "
                f"tokens/s  extra peak memory {r['extra_peak_rss_bytes_per_token']:,.0f} B/token",
                flush=True,
            )
        print(f"speed  K={k:<5d} ours is {ratio:.1f}x faster than {theirs['backend']}", flush=True)
        rows.append({"states": k, "ours": ours, "hmmlearn": theirs, "ratio": ratio})
    return rows


def bench_quality(args) -> list[dict]:
    from lmladder.baselines.hmm import HMM

    data = load_dataset("ptb", args.data_dir)
    rows = []
    for k in args.states:
        grow = args.grow_from if args.grow_from and k > args.grow_from else None
        model = HMM(states=k, max_iterations=args.iterations, seed=0, threads=args.threads,
                    grow_from=grow, stage_iterations=args.stage_iterations,
                    trainer=args.trainer, lr=args.lr, batch_tokens=args.batch_tokens,
                    patience=args.patience)
        report = model.fit(
            data.train.ids,
            data.vocab,
            budget=Budget(seconds=args.seconds),
            valid=data.valid.ids,
        )
        start = time.perf_counter()
        metrics, _ = score_split(model, data.test, data.vocab, policy=ContextPolicy(), name="hmm")
        score_s = time.perf_counter() - start
        row = {
            "states": k,
            "trainer": args.trainer,
            "passes": report.notes["passes"],
            "stages": report.notes["stages"],
            "test_ppl": metrics.ppl,
            "valid_ppl": math.exp(report.notes["valid_nll"]),
            "steps": report.steps,
            "train_seconds": report.seconds,
            "seconds_per_pass": report.seconds / max(report.notes["passes"], 1),
            "budget_seconds": args.seconds,
            "max_iterations": args.iterations,
            "score_tokens_per_s": metrics.tokens / score_s,
            "history": report.history,
        }
        rows.append(row)
        print(
            f"PTB    K={k:<5d} test ppl {metrics.ppl:8.2f}  valid ppl {row['valid_ppl']:8.2f}  "
            f"{args.trainer}: {report.notes['passes']} passes, {report.steps} steps "
            f"(stages {report.notes['stages']}) in {report.seconds:.0f} s "
            f"({row['seconds_per_pass']:.2f} s/pass; budget {args.seconds:.0f} s, "
            f"<= {args.iterations} passes)  scoring {row['score_tokens_per_s']:,.0f} tokens/s",
            flush=True,
        )
    return rows


def bench_synthetic(args) -> dict:
    from lmladder.baselines.hmm import HMM

    data = load_dataset("synthetic")
    model = HMM(states=32, max_iterations=args.iterations, seed=0, threads=args.threads)
    report = model.fit(
        data.train.ids, data.vocab, budget=Budget(seconds=args.seconds), valid=data.valid.ids
    )
    lp = model.token_logprobs(data.test.ids)
    diff = lp - data.test.oracle_logprobs
    row = {
        "states": 32,
        "test_ppl": math.exp(-lp.mean()),
        "oracle_ppl": math.exp(-data.test.oracle_logprobs.mean()),
        "ratio": math.exp(-diff.mean()),
        "ratio_3se": [
            math.exp(-diff.mean() - 3 * diff.std() / math.sqrt(len(diff))),
            math.exp(-diff.mean() + 3 * diff.std() / math.sqrt(len(diff))),
        ],
        "em_iterations": report.steps,
        "train_seconds": report.seconds,
    }
    print(
        f"synth  K=32    test ppl {row['test_ppl']:.3f}  oracle {row['oracle_ppl']:.3f}  "
        f"ratio {row['ratio']:.4f} (3 s.e.: {row['ratio_3se'][0]:.4f}-{row['ratio_3se'][1]:.4f})"
        f"  {report.steps} EM iterations in {report.seconds:.1f} s",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", default=None, help="folder holding ptb/ (else $LMLADDER_DATA)")
    p.add_argument("--only", choices=["speed", "quality", "synthetic"], action="append",
                   help="run only these sections (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help="K up to 256 on PTB, 120 s per K, 2 timed iterations")
    p.add_argument("--speed-tokens", type=int, default=100_000)
    p.add_argument("--speed-states", type=int, nargs="+", default=[64, 256])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hmmlearn-impl", choices=["scaling", "log"], default="scaling")
    p.add_argument("--states", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--seconds", type=float, default=900.0, help="training budget per model")
    p.add_argument("--iterations", type=int, default=100, help="most EM iterations per model")
    p.add_argument("--grow-from", type=int, default=None,
                   help="models with more states start from this many, doubled by splitting")
    p.add_argument("--stage-iterations", type=int, default=10,
                   help="EM iterations of each smaller stage with --grow-from")
    p.add_argument("--trainer", choices=["em", "adam"], default="em")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    p.add_argument("--batch-tokens", type=int, default=32768, help="tokens per chunk / step")
    p.add_argument("--patience", type=int, default=2,
                   help="passes without a better validation perplexity before stopping")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for our backend (hmmlearn is single-threaded)")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.states = [k for k in args.states if k <= 256]
        args.seconds = min(args.seconds, 120.0)
        args.repeats = min(args.repeats, 2)
    sections = args.only or ["speed", "quality", "synthetic"]
    import torch

    results: dict = {"argv": sys.argv[1:], "torch": torch.__version__, "threads": args.threads}
    if "speed" in sections:
        results["speed"] = bench_speed(args)
    if "synthetic" in sections:
        results["synthetic"] = bench_synthetic(args)
    if "quality" in sections:
        results["quality"] = bench_quality(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
