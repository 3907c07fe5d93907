"""Quality and speed benchmarks of the neural family (RNNs and the Transformer) on real corpora.

Usage (corpora from ``--data-dir`` or ``$LMLADDER_DATA``)::

    python -m lmladder.perf.neural shakespeare --seconds 300   # nanoGPT CPU size vs an LSTM
    python -m lmladder.perf.neural ptb --seconds 900           # Zaremba small LSTM on PTB
    python -m lmladder.perf.neural throughput         # tokens/s, MFU, vs the PyTorch example

Every figure is measured in the same run as the peer it is compared with.  ``throughput`` first
measures this machine's fp32 matrix-multiply rate (square 1024 matmuls, median of repeats), then
reports training and scoring tokens/s and model FLOPs utilisation = estimated FLOPs per token x
tokens/s / that rate (training counted as 3 x forward FLOPs).  Its peer is a re-implementation,
written here, of the training step of the PyTorch word-language-model example (``main.py``:
embedding -> dropout -> 2-layer LSTM -> dropout -> linear -> log-softmax -> NLL loss, gradient
clipping at 0.25, a manual SGD update ``p -= lr * grad``, ``loss.item()`` every batch), run at the
same size (2x200, dropout 0.2) and batch (20 x 35) as our LSTM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmladder.api import Budget, ContextPolicy
from lmladder.data import load_dataset
from lmladder.registry import build
from lmladder.scoring import score_split


def _median_spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.0f} (min {min(xs):,.0f}, max {max(xs):,.0f})"


def matmul_flops(n: int = 1024, repeats: int = 7) -> float:
    """Median fp32 FLOP/s of an (n x n) @ (n x n) matmul on this CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        rates.append(4 * 2 * n**3 / (time.perf_counter() - t))
    return statistics.median(rates)


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


class ExampleRNNModel(nn.Module):
    """The word-language-model example's LSTM model, time-major (T, B), written here."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x, hidden):
        out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        logits = self.decoder(self.drop(out)).view(-1, self.decoder.out_features)
        return torch.log_softmax(logits, dim=1), hidden


def example_train_tokens_per_s(train: np.ndarray, vocab_size: int, steps: int) -> float:
    """Training tokens/s of the example's loop (batch 20, bptt 35, lr 20, clip 0.25)."""
    torch.manual_seed(0)
    bsz, bptt, lr = 20, 35, 20.0
    data = torch.as_tensor(train)
    cols = len(data) // bsz
    data = data[: cols * bsz].view(bsz, cols).t().contiguous()  # (cols, 20): time-major
    model = ExampleRNNModel(vocab_size, 200, 200, 2, 0.2)
    model.train()
    criterion = nn.NLLLoss()
    hidden = (torch.zeros(2, bsz, 200), torch.zeros(2, bsz, 200))
    total = 0.0
    start = time.perf_counter()
    for k in range(steps):
        i = k * bptt
        x, y = data[i : i + bptt], data[i + 1 : i + 1 + bptt].reshape(-1)
        model.zero_grad()
        hidden = tuple(h.detach() for h in hidden)
        out, hidden = model(x, hidden)
        loss = criterion(out, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        total += loss.item()
    return steps * bsz * bptt / (time.perf_counter() - start)


def ours_train_tokens_per_s(name: str, overrides: dict, data, steps: int) -> tuple[float, object]:
    model = build(name, overrides)
    report = model.fit(data.train.ids, data.vocab, budget=Budget(steps=steps))
    return report.train_tokens / report.seconds, model


def cmd_throughput(args) -> dict:
    ptb = load_dataset("ptb", args.data_dir)
    shk = load_dataset("tinyshakespeare", args.data_dir)
    peak = matmul_flops()
    print(f"fp32 matmul: {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)", flush=True)
    results: dict = {"benchmark": "throughput", "matmul_flops": peak,
                     "threads": torch.get_num_threads(), "rows": []}
    # The same model as the example: 2x200 LSTM, dropout 0.2, untied, SGD, clip 0.25, 20 x 35.
    same = {"hidden": 200, "layers": 2, "dropout": 0.2, "tied": False, "bptt": 35,
            "batch_size": 20, "optimizer": "sgd", "lr": 20.0, "grad_clip": 0.25,
            "schedule": "constant", "warmup_steps": 0, "weight_decay": 0.0, "log_every": 0}
    ours, theirs, model = [], [], None
    for _ in range(args.repeats):  # interleaved so machine noise hits both alike
        theirs.append(example_train_tokens_per_s(ptb.train.ids, len(ptb.vocab), args.steps))
        rate, model = ours_train_tokens_per_s("lstm", same, ptb, args.steps)
        ours.append(rate)
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"LSTM 2x200 PTB training, batch 20x35: ours {_median_spread(ours)} tokens/s, "
          f"PyTorch example {_median_spread(theirs)} tokens/s, ratio {ratio:.2f}", flush=True)
    flops = 3 * model.forward_flops_per_token()
    results["rows"].append({"what": "lstm 2x200 ptb train", "ours_tokens_per_s": ours,
                            "example_tokens_per_s": theirs, "ratio": ratio,
                            "mfu": flops * statistics.median(ours) / peak})
    n = args.score_tokens
    for label, scored, split in (("lstm 2x200 ptb score", model, ptb.valid),
                                 ("transformer-char-small score", None, shk.valid)):
        model = scored
        if model is None:
            rate, model = ours_train_tokens_per_s("transformer-char-small", {"log_every": 0},
                                                  shk, args.steps)
            f_train = 3 * model.forward_flops_per_token()
            print(f"transformer-char-small training: {rate:,.0f} tokens/s, "
                  f"MFU {f_train * rate / peak:.1%}", flush=True)
            results["rows"].append({"what": "transformer-char-small train",
                                    "tokens_per_s": rate, "mfu": f_train * rate / peak})
        ids = split.ids[:n]
        model.token_logprobs(ids[:500])
        t = time.perf_counter()
        model.token_logprobs(ids)
        rate = len(ids) / (time.perf_counter() - t)
        mfu = model.forward_flops_per_token() * rate / peak
        print(f"{label}: {rate:,.0f} tokens/s, MFU {mfu:.1%}", flush=True)
        results["rows"].append({"what": label, "tokens_per_s": rate, "mfu": mfu})
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
    p = sub.add_parser("throughput", help="tokens/s and MFU against the PyTorch example")
    p.add_argument("--steps", type=int, default=40, help="training steps per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--score-tokens", type=int, default=20000)
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
