"""Quality and speed benchmarks of the neural family (RNNs and the Transformer) on real corpora.

Usage (corpora from ``--data-dir`` or ``$LMLADDER_DATA``)::

    python -m lmladder.perf.neural shakespeare --seconds 300   # nanoGPT CPU size vs an LSTM
    python -m lmladder.perf.neural ptb --seconds 900           # Zaremba small LSTM on PTB
    python -m lmladder.perf.neural throughput --threads 2 1 \
        --wlm-dir PATH/examples/word_language_model --nanogpt-dir PATH/nanoGPT

``throughput`` compares training tokens/s with the peers' own programs, run from their checkouts
in this session: our 2x200 LSTM with PyTorch's word-language-model example (``main.py``, batch
20 x 35, dropout 0.2, SGD lr 20, clipping 0.25) on PTB, and our ``transformer-char-small`` with
nanoGPT's ``train.py`` in its README's CPU Shakespeare-char config.  Every measurement is a fresh
process (its peak RSS recorded) with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to the thread
count, ours and the peer's interleaved; each prints median, min-max and the ratio of medians.
Timing, warm-up and the FLOP formula behind MFU are in :mod:`lmladder.perf.neural_peers`.  The
peak FLOP/s is ``--peak-flops``, else on CPU a measured fp32 matmul roofline (printed as such),
on CUDA the datasheet peak of the GPU.  ``--device cuda`` (with ``--amp``, ``--compile``) runs all
programs on the GPU with the matching flags.  Without a peer's checkout its figures are reported
missing, never remembered.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmladder.api import Budget, ContextPolicy
from lmladder.data import load_dataset, locate
from lmladder.perf.neural_peers import (
    Accel,
    gpu_peak_flops,
    lstm_train_flops,
    nanogpt_command,
    nanogpt_folder,
    nanogpt_timing,
    ours_command,
    ours_timing,
    ptb_folder,
    ptb_vocab_size,
    run_timed,
    score_rate,
    thread_env,
    transformer_train_flops,
    wlm_command,
    wlm_timing,
)
from lmladder.registry import build
from lmladder.scoring import score_split


def _median_spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.0f} (min {min(xs):,.0f}, max {max(xs):,.0f})"


def matmul_flops(n: int = 1024, repeats: int = 7) -> float:
    """The best fp32 FLOP/s of an (n x n) @ (n x n) matmul on this CPU over ``repeats`` tries:
    a roofline, so the fastest try (the least disturbed by other load) is the estimate."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        rates.append(4 * 2 * n**3 / (time.perf_counter() - t))
    return max(rates)


def _progress_printer(name: str):
    def cb(p):
        if "valid_nll" in p.metrics:
            print(f"  {name}: {p.done:,.0f}/{p.total:,.0f} {p.unit}  "
                  f"valid {p.metrics['valid_nll']:.4f} nats/token", flush=True)
    return cb


def train_and_score(name: str, overrides: dict, dataset, budget: Budget, results: dict) -> None:
    model = build(name, overrides)
    report = model.fit(dataset.train.ids, dataset.vocab, budget=budget, valid=dataset.valid.ids,
                       callback=_progress_printer(name))
    row = {"model": name, "config": overrides, "params": model.num_parameters(),
           "train_seconds": report.seconds, "train_tokens": report.train_tokens,
           "steps": report.steps, "epochs": report.notes["epochs"],
           "train_tokens_per_s": report.train_tokens / report.seconds}
    for split in ("valid", "test"):
        t = time.perf_counter()
        m, _ = score_split(model, dataset.splits[split], dataset.vocab)
        row[f"{split}_nll"] = m.nll
        row[f"{split}_ppl"] = m.ppl
        row[f"{split}_bpc"] = m.bpc
        row[f"{split}_score_tokens_per_s"] = m.tokens / (time.perf_counter() - t)
    if dataset.level == "char" and hasattr(model.cfg, "context"):
        # nanoGPT's estimate_loss averages over whole windows (history 0..context-1): the
        # comparable figure is non-overlapping windows, stride == window.
        c = model.cfg.context
        m, _ = score_split(model, dataset.valid, dataset.vocab,
                           policy=ContextPolicy(window=c, stride=c))
        row["valid_nll_nonoverlapping"] = m.nll
    results.setdefault("runs", []).append(row)
    print(json.dumps(row, indent=1), flush=True)


def cmd_shakespeare(args) -> dict:
    data = load_dataset("tinyshakespeare", args.data_dir)
    budget = Budget(seconds=args.seconds)
    results: dict = {"benchmark": "shakespeare", "budget_seconds": args.seconds,
                     "threads": torch.get_num_threads()}
    train_and_score("transformer-char-small", {"seed": args.seed}, data, budget, results)
    # An LSTM with about as many parameters (2 x 256, ~1.1 M) and the same time.
    lstm = {"hidden": 256, "layers": 2, "tied": True, "dropout": 0.0, "optimizer": "adamw",
            "lr": 2e-3, "weight_decay": 0.01, "bptt": 64, "batch_size": 32, "warmup_steps": 50,
            "eval_every": 500, "eval_tokens": 20000, "seed": args.seed}
    train_and_score("lstm", lstm, data, budget, results)
    return results


def cmd_ptb(args) -> dict:
    data = load_dataset("ptb", args.data_dir)
    results: dict = {"benchmark": "ptb", "budget_seconds": args.seconds,
                     "threads": torch.get_num_threads()}
    train_and_score("lstm-small", {"seed": args.seed}, data, Budget(seconds=args.seconds), results)
    return results


# --------------------------------------------------------------------------------------------
# throughput: ours against the peers' own programs (see lmladder.perf.neural_peers)

WARMUP_STEPS = 10  # per process; also every program's log interval where it logs in windows


@dataclass
class Pair:
    """One of our models and its peer program: how to run each, and every run's figures."""

    what: str
    model: str  # the worker's model name
    root: Path  # corpus root for the worker
    steps: int  # measured steps per process (after the warm-up)
    tokens_per_step: int
    train_flops: float  # per token, ours (the peer's may differ only by its vocabulary)
    peer: str
    peer_argv: list[str] | None  # None: no checkout given
    peer_cwd: Path | None
    peer_flops: float
    ours: list[float] = field(default_factory=list, init=False)  # tokens/s of each run
    theirs: list[float] = field(default_factory=list, init=False)
    ours_rss: list[float] = field(default_factory=list, init=False)  # peak RSS, MiB
    theirs_rss: list[float] = field(default_factory=list, init=False)
    score: list[float] = field(default_factory=list, init=False)  # our scoring tokens/s

    def run_ours(self, accel: Accel, env: dict[str, str], score_tokens: int) -> None:
        argv = ours_command(self.model, self.root, steps=WARMUP_STEPS + self.steps,
                            interval=WARMUP_STEPS, accel=accel, score_tokens=score_tokens)
        timed = run_timed(argv, cwd=None, env=env, parse=ours_timing,
                          warmup_steps=WARMUP_STEPS, steps=self.steps)
        score = score_rate(timed.lines)
        if score is None:
            raise RuntimeError("the worker printed no score line; its last lines:\n"
                               + "\n".join(timed.lines[-5:]))
        self.ours.append(timed.steps_per_s * self.tokens_per_step)
        self.ours_rss.append(timed.peak_rss_mib)
        self.score.append(score)

    def run_peer(self, env: dict[str, str]) -> None:
        assert self.peer_argv is not None
        if self.model == "lstm":  # the example trains a whole epoch: stopped once timed
            timed = run_timed(self.peer_argv, cwd=self.peer_cwd, env=env,
                              parse=wlm_timing(WARMUP_STEPS), warmup_steps=WARMUP_STEPS,
                              steps=self.steps, stop_early=True)
        else:
            timed = run_timed(self.peer_argv, cwd=self.peer_cwd, env=env, parse=nanogpt_timing,
                              warmup_steps=WARMUP_STEPS, steps=self.steps)
        self.theirs.append(timed.steps_per_s * self.tokens_per_step)
        self.theirs_rss.append(timed.peak_rss_mib)

    def summary(self, threads: int, peak: float | None, missing: str) -> list[str]:
        """The final lines (median, min-max, ratio, MFU, peak RSS) to copy into a table."""
        med = statistics.median
        head = f"{self.what}, {threads} thread{'s' if threads > 1 else ''}"
        ours = (f"ours {_median_spread(self.ours)} tok/s, MFU "
                f"{_mfu(self.train_flops, med(self.ours), peak)}, "
                f"peak RSS {med(self.ours_rss):,.0f} MiB")
        if not self.theirs:
            lines = [f"{head}: {ours}; {self.peer}: not run ({missing}), ratio missing"]
        else:
            lines = [f"{head}: {ours}; {self.peer} {_median_spread(self.theirs)} tok/s, MFU "
                     f"{_mfu(self.peer_flops, med(self.theirs), peak)}, peak RSS "
                     f"{med(self.theirs_rss):,.0f} MiB; ratio "
                     f"{med(self.ours) / med(self.theirs):.2f}x (back-to-back pairs: "
                     f"{_ratio_spread(self.ours, self.theirs)})"]
        lines.append(f"{head}, scoring (ours): {_median_spread(self.score)} tok/s, MFU "
                     f"{_mfu(self.train_flops / 3, med(self.score), peak)}")
        return lines

    def record(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("root", "peer_argv", "peer_cwd")}


def _ratio_spread(ours: list[float], theirs: list[float]) -> str:
    """Median and range of ours/theirs over the runs taken back to back: a load that drifts
    during the benchmark moves both runs of a pair, so these scatter less than the medians."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return (f"median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x, "
            f"max {max(ratios):.2f}x")


def _mfu(flops: float, rate: float, peak: float | None) -> str:
    return "missing (no peak FLOP/s)" if peak is None else f"{flops * rate / peak:.2%}"


def _peak_flops(args, accel: Accel, threads: int) -> tuple[float | None, str]:
    """The peak FLOP/s that MFU is measured against, and where it comes from."""
    if args.peak_flops is not None:
        return args.peak_flops, "--peak-flops"
    if accel.cuda:
        name = torch.cuda.get_device_name(torch.device(accel.device))
        peak = gpu_peak_flops(name) if accel.amp != "none" else None
        if peak is None:
            return None, f"no known {accel.amp} peak for {name!r}: pass --peak-flops"
        return peak, f"{name}: dense bf16/fp16 peak from NVIDIA's datasheet"
    torch.set_num_threads(threads)
    return matmul_flops(), f"measured fp32 matmul roofline, 1024^3, {threads} threads"


def _pairs(args, accel: Accel, work: Path) -> list[Pair]:
    ptb_root = locate("ptb", args.data_dir)
    shk_root = locate("tinyshakespeare", args.data_dir)
    lstm_flops = lstm_train_flops(ptb_vocab_size(ptb_root))
    wlm = None
    if args.wlm_dir is not None:
        wlm = wlm_command(args.wlm_dir, ptb_folder(ptb_root, work / "ptb"), work / "wlm.pt",
                          interval=WARMUP_STEPS, accel=accel)
    tf_flops = transformer_train_flops(len(load_dataset("tinyshakespeare", args.data_dir).vocab))
    nanogpt, ng_cwd, ng_flops = None, None, tf_flops
    if args.nanogpt_dir is not None:
        ng_cwd, ng_vocab = nanogpt_folder(shk_root, args.nanogpt_dir, work / "nanogpt")
        ng_flops = transformer_train_flops(ng_vocab)
        nanogpt = nanogpt_command(args.nanogpt_dir, work / "nanogpt-out",
                                  iters=WARMUP_STEPS + args.transformer_steps - 1, accel=accel)
    return [Pair("LSTM 2x200 PTB training, batch 20x35", "lstm", ptb_root, args.lstm_steps,
                 20 * 35, lstm_flops, "word-language-model", wlm, None, lstm_flops),
            Pair("char Transformer (nanoGPT CPU config) training, batch 12x64", "transformer",
                 shk_root, args.transformer_steps, 12 * 64, tf_flops, "nanoGPT", nanogpt,
                 ng_cwd, ng_flops)]


def cmd_throughput(args) -> dict:
    accel = Accel(args.device, args.amp, args.compile)
    if args.device.split(":")[0] not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device {args.device}: the peers run on cpu or cuda[:i] only")
    if accel.cuda and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device}: torch sees no CUDA device here")
    for flag, value in (("--lstm-steps", args.lstm_steps),
                        ("--transformer-steps", args.transformer_steps)):
        if value < WARMUP_STEPS or value % WARMUP_STEPS:
            raise SystemExit(f"error: {flag} {value}: use a positive multiple of {WARMUP_STEPS}")
    for flag, path in (("--wlm-dir", args.wlm_dir), ("--nanogpt-dir", args.nanogpt_dir)):
        if path is not None and not path.is_dir():
            raise SystemExit(f"error: {flag} {path}: not a folder (give the peer's checkout)")
    results: dict = {"benchmark": "throughput", "device": accel.device, "amp": accel.amp,
                     "compile": accel.compile, "repeats": args.repeats, "rows": []}
    missing = {"lstm": "pass --wlm-dir", "transformer": "pass --nanogpt-dir"}
    with tempfile.TemporaryDirectory(prefix="lmladder-neural-") as tmp:
        templates = _pairs(args, accel, Path(tmp))
        for threads in args.thread_counts:
            pairs = [dataclasses.replace(t) for t in templates]  # fresh figures per thread count
            env = thread_env(threads)
            peak, source = _peak_flops(args, accel, threads)
            print(f"peak FLOP/s, {threads} thread{'s' if threads > 1 else ''}: "
                  + (f"{peak / 1e9:,.1f} GFLOP/s ({source})" if peak else f"missing ({source})"),
                  flush=True)
            for r in range(args.repeats):
                for pair in pairs:
                    # interleaved, who goes first alternating, so load drifts hit both alike
                    peer_first = pair.peer_argv is not None and r % 2 == 0
                    if peer_first:
                        pair.run_peer(env)
                    pair.run_ours(accel, env, args.score_tokens)
                    if pair.peer_argv is not None and not peer_first:
                        pair.run_peer(env)
                    print(f"  run {r + 1}/{args.repeats}, {threads} threads, {pair.what}: "
                          f"ours {pair.ours[-1]:,.0f} tok/s"
                          + (f", {pair.peer} {pair.theirs[-1]:,.0f}" if pair.theirs else ""),
                          flush=True)
            for pair in pairs:
                for line in pair.summary(threads, peak, missing[pair.model]):
                    print(line, flush=True)
                results["rows"].append({**pair.record(), "threads": threads,
                                        "peak_flops": peak, "peak_source": source})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmladder.perf.neural",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="corpus root (else $LMLADDER_DATA)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 avoids thread "
                             "thrashing when other processes load the machine")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("shakespeare", help="nanoGPT CPU-size Transformer vs LSTM, chars")
    p.add_argument("--seconds", type=float, default=300.0, help="training budget per model")
    p = sub.add_parser("ptb", help="Zaremba small LSTM on PTB under a time budget")
    p.add_argument("--seconds", type=float, default=900.0)
    p = sub.add_parser("throughput", help="tokens/s and MFU against word-language-model and "
                                          "nanoGPT, run from their checkouts")
    p.add_argument("--wlm-dir", type=Path, default=None,
                   help="pytorch/examples' word_language_model folder (holds main.py)")
    p.add_argument("--nanogpt-dir", type=Path, default=None, help="a karpathy/nanoGPT checkout")
    p.add_argument("--threads", dest="thread_counts", type=int, nargs="+", default=[2, 1],
                   help="thread counts (OMP_NUM_THREADS/MKL_NUM_THREADS of every process)")
    p.add_argument("--repeats", type=int, default=3, help="processes per program and thread count")
    p.add_argument("--lstm-steps", type=int, default=100,
                   help=f"timed steps per LSTM process, after {WARMUP_STEPS} warm-up steps")
    p.add_argument("--transformer-steps", type=int, default=200,
                   help="timed steps per Transformer process, after the warm-up")
    p.add_argument("--score-tokens", type=int, default=20000, help="valid tokens ours scores")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i], for every program")
    p.add_argument("--amp", default="bf16", choices=("none", "bf16", "fp16"),
                   help="autocast on CUDA (ours: TrainConfig.amp; nanoGPT: --dtype)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile (ours: TrainConfig.compile; nanoGPT: --compile)")
    p.add_argument("--peak-flops", type=float, default=None,
                   help="peak FLOP/s for MFU (default: a measured CPU matmul roofline, or the "
                        "GPU's datasheet peak)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    commands = {"shakespeare": cmd_shakespeare, "ptb": cmd_ptb, "throughput": cmd_throughput}
    results = commands[args.cmd](args)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
