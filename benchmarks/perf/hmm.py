"""HMM benchmarks: EM speed and memory against hmmlearn, how they grow with K and with tokens, the
PTB perplexity-vs-states curve, the synthetic oracle gap.

    python -m lmladder.perf.hmm --data-dir DIR                          # everything
    python -m lmladder.perf.hmm --data-dir DIR --quick                  # smaller budgets
    python -m lmladder.perf.hmm --data-dir DIR --only speed --out r.json

speed
    Seconds per EM iteration of our ``hmm`` model on the CPU (numpy, on ``--threads`` BLAS
    threads; it does not import torch, and a row whose processes did would say "torch
    imported") and of ``hmm-hmmlearn``, which drives ``hmmlearn.hmm.CategoricalHMM``
    (``--hmmlearn-impl``), on the
    same sentences (the first ``--speed-tokens`` PTB training tokens, as in ANCHORS.md) from the
    same starting parameters, for each K of ``--speed-states``, and the peak resident memory of
    each process (data loading and imports included: the whole process).  Every
    measurement is a fresh process that times one EM iteration (ours after one warm-up
    iteration, which also packs the sentences), and ours and hmmlearn's processes alternate, so
    a machine busy with other work slows both alike.  ``--repeats`` processes of ours,
    ``--hmmlearn-repeats`` of hmmlearn's (default: as many for K <= 64, one above, where one
    iteration takes a minute).  Printed: median, min-max, the speed ratio and the memory ratio.
    Peak memory is the kernel's ``ru_maxrss`` of the child (``os.wait4``).  A child inherits its
    parent's peak at ``exec``, so this parent imports neither torch nor hmmlearn before these
    sections run, and its own peak (loading PTB once) stays below any child's.
growth
    Ours alone, one process per row: seconds per EM iteration and peak memory for each K of
    ``--growth-states`` on ``--speed-tokens`` tokens, and for each token count of
    ``--growth-tokens`` at K = ``--growth-k``, each dense and with each ``--growth-blocks``
    (blocked emissions); printed last as a table.
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
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import time

from lmladder.api import Budget, ContextPolicy
from lmladder.data import DataError, load_dataset
from lmladder.scoring import score_split


def time_one_iteration(spec: dict) -> dict:
    """In a child process: seconds of one EM iteration of ``spec["backend"]`` ("ours" or
    "hmmlearn") with ``spec["states"]`` states on the first ``spec["tokens"]`` PTB training
    tokens."""
    data = load_dataset("ptb", spec["data_dir"])
    train = data.train.ids[: spec["tokens"]]
    if spec["backend"] == "ours":
        from lmladder.baselines.hmm import HMM

        model = HMM(states=spec["states"], tol=0.0, threads=spec["threads"],
                    emission_blocks=spec.get("blocks", 1))
        iterations = 2  # the first is a warm-up: packing, first calls
    else:
        from lmladder.baselines.hmm_hmmlearn import HmmlearnHMM

        model = HmmlearnHMM(states=spec["states"], tol=0.0, implementation=spec["impl"])
        iterations = 1
    report = model.fit(train, data.vocab, budget=Budget(steps=iterations))
    ends = [h["seconds"] for h in report.history]
    return {"seconds": ends[-1] - (ends[-2] if len(ends) > 1 else 0.0), "tokens": len(train),
            "torch_imported": "torch" in sys.modules}


def run_child(spec: dict) -> dict:
    """:func:`time_one_iteration` in a fresh interpreter, plus its peak RSS (``peak_mib``)."""
    cmd = [sys.executable, "-m", "lmladder.perf.hmm", "--child", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    with proc.stdout:
        out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reaped here, not by Popen: we want its rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['backend']} K={spec['states']} failed: {out.strip()[-500:]}")
    return {**json.loads(out.splitlines()[-1]), "peak_mib": usage.ru_maxrss / 1024}


def _summary(runs: list[dict]) -> dict:
    seconds = [r["seconds"] for r in runs]
    peaks = [r["peak_mib"] for r in runs]
    return {"runs": runs, "seconds": statistics.median(seconds),
            "seconds_range": [min(seconds), max(seconds)], "peak_mib": statistics.median(peaks),
            "peak_mib_range": [min(peaks), max(peaks)]}


def _spec(args, backend: str, states: int, tokens: int) -> dict:
    return {"backend": backend, "states": states, "tokens": tokens, "data_dir": args.data_dir,
            "threads": args.threads, "impl": args.hmmlearn_impl}


def bench_speed(args) -> list[dict]:
    rows = []
    for k in args.speed_states:
        theirs_repeats = args.hmmlearn_repeats or (args.repeats if k <= 64 else 1)
        runs: dict[str, list[dict]] = {"ours": [], "hmmlearn": []}
        for i in range(max(args.repeats, theirs_repeats)):  # alternate: load hits both alike
            if i < args.repeats:
                runs["ours"].append(run_child(_spec(args, "ours", k, args.speed_tokens)))
            if i < theirs_repeats:
                runs["hmmlearn"].append(run_child(_spec(args, "hmmlearn", k, args.speed_tokens)))
        ours, theirs = _summary(runs["ours"]), _summary(runs["hmmlearn"])
        row = {"states": k, "tokens": args.speed_tokens, "ours": ours, "hmmlearn": theirs,
               "speed_ratio": theirs["seconds"] / ours["seconds"],
               "memory_ratio": ours["peak_mib"] / theirs["peak_mib"]}
        names = {"ours": f"ours ({args.threads} thr)", "hmmlearn": f"hmmlearn-{args.hmmlearn_impl}"}
        for name, r in (("ours", ours), ("hmmlearn", theirs)):
            torch_note = "torch imported" if any(x["torch_imported"] for x in r["runs"]) else ""
            print(f"speed  K={k:<5d} {names[name]:<17s} {r['seconds']:8.3f} s/iter (median of "
                  f"{len(r['runs'])}, {r['seconds_range'][0]:.3f}-{r['seconds_range'][1]:.3f})  "
                  f"peak RSS {r['peak_mib']:6.1f} MiB ({r['peak_mib_range'][0]:.1f}-"
                  f"{r['peak_mib_range'][1]:.1f})  {torch_note}".rstrip(), flush=True)
        print(f"speed  K={k:<5d} ours is {row['speed_ratio']:.1f}x faster than hmmlearn, with "
              f"{row['memory_ratio']:.2f}x its peak memory", flush=True)
        rows.append(row)
    return rows


def bench_growth(args) -> list[dict]:
    """Ours alone: seconds per EM iteration and peak RSS over K, then over training tokens."""
    points = [(k, args.speed_tokens) for k in args.growth_states]
    points += [(args.growth_k, n) for n in args.growth_tokens if (args.growth_k, n) not in points]
    rows = []
    for k, n in points:
        for m in args.growth_blocks:
            if k % m or (m > 1 and k == m):
                continue  # blocks must divide K; K blocks of one state each say nothing
            r = run_child({**_spec(args, "ours", k, n), "blocks": m})
            rows.append({"states": k, "blocks": m, **r})
            print(f"growth K={k:<5d} blocks={m:<4d} tokens={r['tokens']:>9,d}  "
                  f"{r['seconds']:9.3f} s/iter  peak RSS {r['peak_mib']:7.1f} MiB", flush=True)
    print(f"\n| K | emission blocks | tokens | s per EM iteration ({args.threads} threads) "
          "| peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['states']} | {r['blocks']} | {r['tokens']:,} | {r['seconds']:.3f} "
              f"| {r['peak_mib']:.0f} |")
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
    p.add_argument("--only", choices=["speed", "growth", "quality", "synthetic"], action="append",
                   help="run only these sections (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help="K up to 256 on PTB, 120 s per K, 2 processes per speed measurement, "
                        "growth up to K = 1024")
    p.add_argument("--speed-tokens", type=int, default=100_000)
    p.add_argument("--speed-states", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--repeats", type=int, default=3, help="processes of ours per speed row")
    p.add_argument("--hmmlearn-repeats", type=int, default=None,
                   help="processes of hmmlearn per speed row (default: --repeats for K <= 64, "
                        "else 1)")
    p.add_argument("--hmmlearn-impl", choices=["scaling", "log"], default="scaling")
    p.add_argument("--growth-states", type=int, nargs="+", default=[16, 64, 256, 1024, 4096])
    p.add_argument("--growth-tokens", type=int, nargs="+", default=[25_000, 100_000, 400_000])
    p.add_argument("--growth-k", type=int, default=256, help="K of the growth-with-tokens rows")
    p.add_argument("--growth-blocks", type=int, nargs="+", default=[1],
                   help="emission_blocks of the growth rows (1: dense; each is run where it "
                        "divides K)")
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
    p.add_argument("--threads", type=int, default=2,
                   help="our model's threads (numpy's BLAS; also torch's with --trainer adam)")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # see run_child
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(time_one_iteration(json.loads(args.child))))
        return 0
    for flag in ("speed_tokens", "repeats", "threads", "growth_k"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if min(args.growth_blocks) < 1:
        p.error("--growth-blocks must be >= 1 (1: dense)")
    if args.quick:
        args.states = [k for k in args.states if k <= 256]
        args.growth_states = [k for k in args.growth_states if k <= 1024]
        args.seconds = min(args.seconds, 120.0)
        args.repeats = min(args.repeats, 2)
    sections = args.only or ["speed", "growth", "synthetic", "quality"]
    if set(sections) - {"synthetic"}:
        try:  # fail here, in one line, rather than in a child
            load_dataset("ptb", args.data_dir)
        except DataError as err:
            print(f"error: PTB (--data-dir or $LMLADDER_DATA): {' '.join(str(err).split())}",
                  file=sys.stderr)
            return 2
    results: dict = {"argv": sys.argv[1:], "numpy": importlib.metadata.version("numpy"),
                     "torch": importlib.metadata.version("torch"),
                     "hmmlearn": importlib.metadata.version("hmmlearn"), "threads": args.threads}
    # The sections that measure memory in children run first, while this process is small.
    if "speed" in sections:
        results["speed"] = bench_speed(args)
    if "growth" in sections:
        results["growth"] = bench_growth(args)
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
