"""One timed training run of ours, in its own process (started by ``lmladder.perf.neural``).

    python -m lmladder.perf.neural_worker lstm --data-dir DIR --steps 100 --interval 10

trains ``lstm`` (the word-language-model example's 2x200 LSTM on PTB) or ``transformer``
(nanoGPT's CPU Shakespeare-char size) for ``steps`` optimizer steps and prints one line per
``interval`` steps, ``ours: N steps in X ms`` (the first one includes the set-up, so the caller
counts it as warm-up), then scores ``--score-tokens`` tokens of valid and prints
``score: N tokens in X ms``.  Threads come from ``OMP_NUM_THREADS`` as for the peers.
"""

from __future__ import annotations

import argparse
import sys
import time

from lmladder.api import Budget
from lmladder.data import load_dataset
from lmladder.perf.neural_peers import LSTM_AS_WLM, TRANSFORMER_AS_NANOGPT
from lmladder.registry import build
from lmladder.timing import synchronize

MODELS = {  # name -> (registry entry, corpus, our config with the peer's recipe)
    "lstm": ("lstm", "ptb", LSTM_AS_WLM),
    "transformer": ("transformer-char-small", "tinyshakespeare", TRANSFORMER_AS_NANOGPT),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmladder.perf.neural_worker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--data-dir", default=None, help="corpus root (else $LMLADDER_DATA)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--interval", type=int, default=10, help="steps per printed line")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="bf16", choices=("none", "bf16", "fp16"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--score-tokens", type=int, default=20000)
    args = parser.parse_args(argv)
    entry, corpus, recipe = MODELS[args.model]
    data = load_dataset(corpus, args.data_dir)
    model = build(entry, {**recipe, "log_every": args.interval, "eval_every": 0,
                          "amp": args.amp, "compile": args.compile}).to(args.device)
    marks = [time.perf_counter()]

    def mark(progress) -> None:
        # log points call float(loss): the device has finished every step before them
        now = time.perf_counter()
        print(f"ours: {args.interval} steps in {(now - marks[-1]) * 1000:.2f} ms", flush=True)
        marks.append(now)

    model.fit(data.train.ids, data.vocab, budget=Budget(steps=args.steps), callback=mark)
    ids = data.valid.ids[: args.score_tokens]
    model.token_logprobs(ids[:500])  # warm-up
    synchronize(args.device)
    start = time.perf_counter()
    model.token_logprobs(ids)
    synchronize(args.device)
    print(f"score: {len(ids)} tokens in {(time.perf_counter() - start) * 1000:.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
