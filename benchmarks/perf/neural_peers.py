"""Running the neural reference programs from their own sources, and timing them like ours.

The peers are PyTorch's word-language-model example (``main.py``) and nanoGPT (``train.py``),
each run as a program from the checkout passed on the command line; nothing is imported from
them.  Our side runs in a fresh process too (:mod:`lmladder.perf.neural_worker`), so every
figure is one process's steady state with its own peak memory.

How each program is timed (all wall clock, warm-up excluded):

* word-language-model: its own ``| ... ms/batch X |`` log lines, one per ``--log-interval``
  batches; the process is stopped once enough batches were logged.
* nanoGPT: its own ``iter N: loss L, time X ms`` lines, one per iteration (``--log_interval=1``);
  iteration 0 (which includes an evaluation) falls in the warm-up.
* ours: the worker's ``ours: N steps in X ms`` lines, one per ``log_every`` steps.

Tokens/s = measured steps x tokens per step / their seconds.  FLOPs use one formula for every
program (the model is the same on both sides): training = 3 x forward, forward = 2 FLOPs per
multiply-add of every weight matrix (recurrent layers or Transformer blocks, and the output layer)
plus, for the Transformer, 2 x layers x context x width for attention over an average of
``context / 2`` keys -- i.e. 6N per token plus the attention term
(:func:`~lmladder.neural.rnn.rnn_forward_flops`,
:func:`~lmladder.neural.transformer.transformer_forward_flops`).
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmladder.neural.rnn import RNNConfig, rnn_forward_flops
from lmladder.neural.transformer import TransformerConfig, transformer_forward_flops

# Our configurations with the peers' recipes (TrainConfig fields; ``log_every`` is set per run).
# The word-language-model example run as below: 2x200 LSTM, dropout 0.2, untied, SGD lr 20,
# clipping 0.25, batch 20 x 35, constant rate within its first epoch.
LSTM_AS_WLM = {"cell": "lstm", "hidden": 200, "layers": 2, "dropout": 0.2, "tied": False,
               "bptt": 35, "batch_size": 20, "optimizer": "sgd", "lr": 20.0, "grad_clip": 0.25,
               "schedule": "constant", "warmup_steps": 0, "weight_decay": 0.0}
# nanoGPT's CPU Shakespeare-char config (its README): 4 layers, 4 heads, 128 wide, context 64,
# batch 12, dropout 0, no biases, tied -- our ``transformer-char-small`` registry entry.
TRANSFORMER_AS_NANOGPT = {"layers": 4, "heads": 4, "width": 128, "context": 64,
                          "batch_size": 12, "dropout": 0.0, "bias": False, "tied": True,
                          "positions": "learned"}
NANOGPT_ITERS_DECAY = 2000  # its README's --lr_decay_iters for the CPU config

# Dense bf16/fp16 tensor-core peaks, FLOP/s, from NVIDIA's H100 and H200 datasheets (their
# figures are "with sparsity"; dense is half): H100 SXM 1,979 -> 989 TFLOP/s, H100 NVL 1,671 ->
# 835, H100 PCIe 1,513 -> 756, H200 (SXM and NVL) 1,979 -> 989.  The longest key found in
# torch.cuda.get_device_name() wins.
GPU_PEAK_FLOPS = {"H100": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H200": 989e12}


def lstm_train_flops(vocab_size: int) -> float:
    """Training FLOPs per token of the 2x200 LSTM of :data:`LSTM_AS_WLM`."""
    return 3.0 * rnn_forward_flops(RNNConfig(**LSTM_AS_WLM), vocab_size)


def transformer_train_flops(vocab_size: int) -> float:
    """Training FLOPs per token of the Transformer of :data:`TRANSFORMER_AS_NANOGPT`."""
    return 3.0 * transformer_forward_flops(TransformerConfig(**TRANSFORMER_AS_NANOGPT), vocab_size)


def gpu_peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named ``device_name`` (``None`` if not in the table)."""
    keys = [k for k in GPU_PEAK_FLOPS if k in device_name]
    return GPU_PEAK_FLOPS[max(keys, key=len)] if keys else None


# --------------------------------------------------------------------------------------------
# Data folders laid out as each program expects them


def ptb_folder(data_dir: Path, dest: Path) -> Path:
    """``dest`` with ``train.txt``/``valid.txt``/``test.txt`` linked to the PTB split files (the
    word-language-model example reads ``--data DIR`` with those names)."""
    dest.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        src = data_dir / "ptb" / f"ptb.{split}.txt"
        if not src.is_file():
            raise FileNotFoundError(f"{src} not found: pass --data-dir with the ptb corpus")
        link = dest / f"{split}.txt"
        link.unlink(missing_ok=True)
        link.symlink_to(src.resolve())
    return dest


def ptb_vocab_size(data_dir: Path) -> int:
    """Distinct words of the three PTB splits plus ``<eos>`` (the example's dictionary)."""
    words = {"<eos>"}
    for split in ("train", "valid", "test"):
        words.update((data_dir / "ptb" / f"ptb.{split}.txt").read_text().split())
    return len(words)


def nanogpt_folder(data_dir: Path, nanogpt_dir: Path, dest: Path) -> tuple[Path, int]:
    """A working folder for nanoGPT's ``train.py`` and its vocabulary size.

    nanoGPT reads ``configurator.py``, ``config/`` and ``data/shakespeare_char/`` relative to its
    working directory; the first two are linked from the checkout, the data is written here the
    way its ``prepare.py`` writes it (sorted characters -> ids, first 90% train, the rest val,
    uint16 ``train.bin``/``val.bin``, ``meta.pkl`` with ``vocab_size``/``stoi``/``itos``) from
    the local Tiny Shakespeare instead of a download.
    """
    src = data_dir / "tinyshakespeare" / "input.txt"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: pass --data-dir with the tinyshakespeare corpus")
    for name in ("train.py", "configurator.py", "config/train_shakespeare_char.py"):
        if not (nanogpt_dir / name).is_file():
            raise FileNotFoundError(f"--nanogpt-dir {nanogpt_dir}: no {name} (a nanoGPT checkout "
                                    "is needed)")
    text = src.read_text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    out = dest / "data" / "shakespeare_char"
    out.mkdir(parents=True, exist_ok=True)
    cut = int(len(text) * 0.9)
    ids[:cut].tofile(out / "train.bin")
    ids[cut:].tofile(out / "val.bin")
    meta = {"vocab_size": len(chars), "stoi": stoi, "itos": dict(enumerate(chars))}
    (out / "meta.pkl").write_bytes(pickle.dumps(meta))
    for name in ("configurator.py", "config"):
        link = dest / name
        if not link.exists():
            link.symlink_to((nanogpt_dir / name).resolve())
    return dest, len(chars)


# --------------------------------------------------------------------------------------------
# Command lines


@dataclass(frozen=True)
class Accel:
    """Device settings shared by all programs: ``device`` cpu/cuda, ``amp`` (our
    ``TrainConfig.amp``: none/bf16/fp16; CUDA only) and ``compile`` (torch.compile)."""

    device: str = "cpu"
    amp: str = "bf16"
    compile: bool = False

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def torch_dtype(self) -> str:
        """nanoGPT's ``--dtype`` for our ``amp`` (its CPU path always runs float32)."""
        if not self.cuda:
            return "float32"
        return {"none": "float32", "bf16": "bfloat16", "fp16": "float16"}[self.amp]


def wlm_command(wlm_dir: Path, data: Path, save: Path, *, interval: int, accel: Accel
                ) -> list[str]:
    """The word-language-model example's command line for the 2x200 LSTM (one epoch, logging
    every ``interval`` batches).  Its GPU flag is ``--accel`` in current checkouts and ``--cuda``
    in older ones; the checkout's ``main.py`` decides which.  It has no AMP or compile option."""
    argv = [sys.executable, str(wlm_dir / "main.py"), "--data", str(data), "--model", "LSTM",
            "--emsize", "200", "--nhid", "200", "--nlayers", "2", "--dropout", "0.2",
            "--lr", "20", "--clip", "0.25", "--bptt", "35", "--batch_size", "20",
            "--epochs", "1", "--log-interval", str(interval), "--save", str(save)]
    if accel.cuda:
        source = (wlm_dir / "main.py").read_text()
        argv.append("--accel" if "'--accel'" in source or '"--accel"' in source else "--cuda")
    return argv


def nanogpt_command(nanogpt_dir: Path, out_dir: Path, *, iters: int, accel: Accel) -> list[str]:
    """nanoGPT's command line for its README's CPU Shakespeare-char config, ``iters`` iterations
    (it runs ``iters + 1``), device/compile/dtype from ``accel``."""
    return [sys.executable, str(nanogpt_dir / "train.py"), "config/train_shakespeare_char.py",
            f"--device={'cuda' if accel.cuda else 'cpu'}", f"--compile={accel.compile}",
            f"--dtype={accel.torch_dtype}", "--eval_iters=20", "--log_interval=1",
            "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
            f"--max_iters={iters}", f"--lr_decay_iters={NANOGPT_ITERS_DECAY}", "--dropout=0.0",
            f"--out_dir={out_dir}"]


def ours_command(model: str, data_dir: Path, *, steps: int, interval: int, accel: Accel,
                 score_tokens: int) -> list[str]:
    """Our worker's command line (:mod:`lmladder.perf.neural_worker`)."""
    argv = [sys.executable, "-m", "lmladder.perf.neural_worker", model,
            "--data-dir", str(data_dir), "--steps", str(steps), "--interval", str(interval),
            "--device", accel.device, "--amp", accel.amp, "--score-tokens", str(score_tokens)]
    return argv + (["--compile"] if accel.compile else [])


def thread_env(threads: int) -> dict[str, str]:
    """The environment of every timed process: the same thread count for OpenMP and MKL (each
    program may still call ``torch.set_num_threads`` itself; none of these does), unbuffered
    output so log lines arrive when they are printed."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------------------------
# Log lines -> (steps, seconds)

_WLM = re.compile(r"\|\s*(\d+)/\s*\d+ batches \|.*\| ms/batch\s+([\d.]+) \|")
_NANOGPT = re.compile(r"^iter (\d+): loss [\d.naif]+, time ([\d.]+)ms")
_OURS = re.compile(r"^ours: (\d+) steps in ([\d.]+) ms$")
_SCORE = re.compile(r"^score: (\d+) tokens in ([\d.]+) ms$")


def wlm_timing(interval: int) -> Callable[[str], tuple[int, float] | None]:
    """Parser of the example's log line: ``interval`` batches at its ``ms/batch``."""
    def parse(line: str) -> tuple[int, float] | None:
        m = _WLM.search(line)
        return None if m is None else (interval, interval * float(m[2]) / 1000)
    return parse


def nanogpt_timing(line: str) -> tuple[int, float] | None:
    """One nanoGPT iteration's time from its ``iter N: ... time X ms`` line."""
    m = _NANOGPT.search(line)
    return None if m is None else (1, float(m[2]) / 1000)


def ours_timing(line: str) -> tuple[int, float] | None:
    m = _OURS.search(line)
    return None if m is None else (int(m[1]), float(m[2]) / 1000)


def score_rate(lines: Sequence[str]) -> float | None:
    """Scoring tokens/s from the worker's ``score:`` line (``None`` if it printed none)."""
    for line in lines:
        m = _SCORE.search(line)
        if m is not None:
            return int(m[1]) / (float(m[2]) / 1000)
    return None


# --------------------------------------------------------------------------------------------
# One timed process


@dataclass
class Timed:
    """One process: steps/s after warm-up, its peak resident memory and its output."""

    steps_per_s: float
    peak_rss_mib: float
    lines: list[str]


def steady_rate(samples: Sequence[tuple[int, float]], warmup_steps: int) -> tuple[float, int]:
    """Steps/s over the samples after the first ``warmup_steps`` steps, and how many steps
    that measured (samples are ``(steps, seconds)`` in log order)."""
    done = steps = 0
    seconds = 0.0
    for n, s in samples:
        if done >= warmup_steps:
            steps, seconds = steps + n, seconds + s
        done += n
    return (steps / seconds if seconds > 0 else 0.0), steps


def run_timed(argv: list[str], *, cwd: Path | None, env: dict[str, str],
              parse: Callable[[str], tuple[int, float] | None], warmup_steps: int, steps: int,
              stop_early: bool = False, timeout: float = 900.0) -> Timed:
    """Run ``argv``, collect ``(steps, seconds)`` from its output with ``parse``, and measure it.

    With ``stop_early`` the process is terminated as soon as ``steps`` steps after the warm-up
    were logged (the example trains a whole epoch otherwise); else it runs to its end, killed
    after ``timeout`` seconds at the latest.  Peak
    memory is the kernel's ``ru_maxrss`` of the process (``os.wait4``), KiB -> MiB.
    """
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(timeout, proc.kill)  # a hung program must not hang the benchmark
    watchdog.start()
    lines: list[str] = []
    samples: list[tuple[int, float]] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            sample = parse(line)
            if sample is not None:
                samples.append(sample)
            if stop_early and steady_rate(samples, warmup_steps)[1] >= steps:
                proc.send_signal(signal.SIGTERM)
                break
    except BaseException:  # interrupted: leave no orphan behind
        proc.kill()
        raise
    finally:
        proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    rate, measured = steady_rate(samples, warmup_steps)
    if measured < steps:
        tail = "\n".join(lines[-15:])
        raise RuntimeError(f"{' '.join(argv[:3])} logged {measured} of {steps} steps after "
                           f"warm-up (exit status {proc.returncode}); its last lines:\n{tail}")
    return Timed(rate, usage.ru_maxrss / 1024, lines)
