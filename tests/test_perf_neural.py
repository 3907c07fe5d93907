"""The pure parts of the neural throughput benchmark: command lines, log parsing, timing
arithmetic, FLOP counts, peak tables and the nanoGPT data folder (no peer is run here)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from lmladder.neural.rnn import RNNConfig, rnn_forward_flops
from lmladder.perf import neural, neural_worker
from lmladder.perf.neural_peers import (
    LSTM_AS_WLM,
    Accel,
    gpu_peak_flops,
    lstm_train_flops,
    nanogpt_command,
    nanogpt_folder,
    nanogpt_timing,
    ours_command,
    ours_timing,
    run_timed,
    score_rate,
    steady_rate,
    transformer_train_flops,
    wlm_command,
    wlm_timing,
)

CUDA_BF16 = Accel("cuda", "bf16", compile=True)


def _fake_wlm(tmp_path: Path, flag: str) -> Path:
    (tmp_path / "main.py").write_text(f"parser.add_argument('{flag}', action='store_true')\n")
    return tmp_path


def test_wlm_command_matches_the_lstm_recipe(tmp_path):
    argv = wlm_command(_fake_wlm(tmp_path, "--accel"), Path("/d"), Path("/m.pt"), interval=10,
                       accel=Accel())
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert flags["--model"] == "LSTM" and flags["--emsize"] == flags["--nhid"] == "200"
    assert (flags["--bptt"], flags["--batch_size"], flags["--dropout"]) == ("35", "20", "0.2")
    assert flags["--log-interval"] == "10" and "--accel" not in argv


@pytest.mark.parametrize("flag", ["--accel", "--cuda"])
def test_wlm_gpu_flag_is_the_checkouts_own(tmp_path, flag):
    argv = wlm_command(_fake_wlm(tmp_path, flag), Path("/d"), Path("/m.pt"), interval=10,
                       accel=CUDA_BF16)
    assert argv[-1] == flag


def test_nanogpt_command_cpu_and_cuda():
    cpu = nanogpt_command(Path("/ng"), Path("/out"), iters=109, accel=Accel())
    assert {"--device=cpu", "--compile=False", "--dtype=float32", "--block_size=64",
            "--batch_size=12", "--n_layer=4", "--n_embd=128", "--max_iters=109",
            "--dropout=0.0"} <= set(cpu)
    gpu = nanogpt_command(Path("/ng"), Path("/out"), iters=109, accel=CUDA_BF16)
    assert {"--device=cuda", "--compile=True", "--dtype=bfloat16"} <= set(gpu)
    fp32 = nanogpt_command(Path("/ng"), Path("/out"), iters=9, accel=Accel("cuda", "none"))
    assert "--dtype=float32" in fp32


def test_ours_command_passes_the_device_flags():
    argv = ours_command("lstm", Path("/data"), steps=110, interval=10, accel=CUDA_BF16,
                        score_tokens=500)
    assert argv[1:4] == ["-m", "lmladder.perf.neural_worker", "lstm"]
    assert argv[argv.index("--device") + 1] == "cuda" and argv[-1] == "--compile"
    assert argv[argv.index("--amp") + 1] == "bf16"


def test_log_lines_are_parsed():
    wlm = ("| epoch   1 |    40/ 1327 batches | lr 20.00 | ms/batch 113.08 | loss  7.12 | "
           "ppl  1239.78")
    assert wlm_timing(20)(wlm) == (20, pytest.approx(20 * 0.11308))
    assert wlm_timing(20)("| end of epoch   1 | time: 10.00s | valid loss  5.00 |") is None
    assert nanogpt_timing("iter 71: loss 2.7687, time 58.09ms, mfu 0.02%") == (
        1, pytest.approx(0.05809))
    assert nanogpt_timing("step 0: train loss 4.2, val loss 4.2") is None
    assert ours_timing("ours: 10 steps in 523.10 ms") == (10, pytest.approx(0.5231))
    assert score_rate(["x", "score: 3000 tokens in 500.00 ms"]) == pytest.approx(6000.0)
    assert score_rate(["x"]) is None


def test_steady_rate_skips_the_warm_up():
    samples = [(10, 9.0), (10, 1.0), (10, 1.0), (10, 2.0)]  # the first window is slow set-up
    assert steady_rate(samples, 10) == (pytest.approx(30 / 4.0), 30)
    assert steady_rate([(1, 5.0)] * 3, 3) == (0.0, 0)


def test_flop_formulas_are_the_models_own():
    v = 10_000
    assert lstm_train_flops(v) == 3 * rnn_forward_flops(RNNConfig(**LSTM_AS_WLM), v)
    assert lstm_train_flops(v) == 3 * 2 * (2 * 4 * 200 * 400 + 200 * v)  # 6N, N = 2.64 M
    d, layers, context = 128, 4, 64
    assert transformer_train_flops(65) == 3 * (2 * (layers * 12 * d * d + 65 * d)
                                               + 2 * layers * context * d)


def test_gpu_peaks_by_device_name():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak_flops("NVIDIA H200") == 989e12
    assert gpu_peak_flops("Tesla T4") is None


def test_nanogpt_folder_is_written_like_prepare_py(tmp_path):
    data = tmp_path / "data"
    (data / "tinyshakespeare").mkdir(parents=True)
    text = "to be or not to be\n" * 10
    (data / "tinyshakespeare" / "input.txt").write_text(text)
    ng = tmp_path / "nanoGPT"
    (ng / "config").mkdir(parents=True)
    for name in ("train.py", "configurator.py", "config/train_shakespeare_char.py"):
        (ng / name).write_text("")
    cwd, vocab = nanogpt_folder(data, ng, tmp_path / "work")
    chars = sorted(set(text))
    assert vocab == len(chars)
    out = cwd / "data" / "shakespeare_char"
    ids = np.concatenate([np.fromfile(out / "train.bin", dtype=np.uint16),
                          np.fromfile(out / "val.bin", dtype=np.uint16)])
    assert "".join(chars[i] for i in ids) == text
    assert len(np.fromfile(out / "train.bin", dtype=np.uint16)) == int(len(text) * 0.9)
    meta = pickle.loads((out / "meta.pkl").read_bytes())
    assert meta["vocab_size"] == vocab and meta["itos"][0] == chars[0]
    assert (cwd / "configurator.py").exists() and (cwd / "config").is_dir()


def test_nanogpt_folder_refuses_a_wrong_checkout(tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("abc")
    with pytest.raises(FileNotFoundError, match="--nanogpt-dir"):
        nanogpt_folder(tmp_path, tmp_path / "nowhere", tmp_path / "work")


def _printer(lines: list[str], tail: str = "") -> list[str]:
    body = "; ".join(f"print({line!r})" for line in lines)
    return [sys.executable, "-c", body + tail]


def test_run_timed_measures_a_process(tmp_path):
    lines = ["ours: 10 steps in 900.00 ms"] + ["ours: 10 steps in 100.00 ms"] * 3
    timed = run_timed(_printer(lines), cwd=tmp_path, env=None, parse=ours_timing,
                      warmup_steps=10, steps=30)
    assert timed.steps_per_s == pytest.approx(100.0)
    assert timed.peak_rss_mib > 1 and len(timed.lines) == 4


def test_run_timed_stops_a_long_run_early(tmp_path):
    argv = _printer(["ours: 10 steps in 100.00 ms"] * 3, "; import time; time.sleep(60)")
    timed = run_timed(argv, cwd=tmp_path, env=None, parse=ours_timing, warmup_steps=10,
                      steps=20, stop_early=True, timeout=30)
    assert timed.steps_per_s == pytest.approx(100.0)


def test_run_timed_says_what_a_failed_run_printed(tmp_path):
    argv = _printer(["ours: 10 steps in 100.00 ms", "boom"], "; raise SystemExit(3)")
    with pytest.raises(RuntimeError, match=r"(?s)logged 0 of 20 steps.*exit status 3.*boom"):
        run_timed(argv, cwd=tmp_path, env=None, parse=ours_timing, warmup_steps=10, steps=20)


@pytest.mark.parametrize(("args", "message"), [
    (["--wlm-dir", "/no/such/folder"], "--wlm-dir /no/such/folder: not a folder"),
    (["--lstm-steps", "15"], "--lstm-steps 15: use a positive multiple of 10"),
    (["--device", "mps"], "--device mps: the peers run on cpu or cuda"),
])
def test_bad_flags_are_one_line_errors(args, message):
    with pytest.raises(SystemExit, match=message):
        neural.main(["throughput", *args])


def test_worker_prints_what_the_harness_parses(data_dir, capsys):
    assert neural_worker.main(["transformer", "--data-dir", str(data_dir), "--steps", "20",
                               "--interval", "10", "--score-tokens", "300"]) == 0
    lines = capsys.readouterr().out.splitlines()
    windows = [ours_timing(line) for line in lines if ours_timing(line)]
    assert [n for n, _ in windows] == [10, 10] and all(s > 0 for _, s in windows)
    assert score_rate(lines) > 0


def _pair(peer_argv) -> neural.Pair:
    return neural.Pair("LSTM", "lstm", Path("/d"), 60, 700, 1.0e7, "wlm", peer_argv, None, 1.0e7)


def test_summary_lines_carry_median_spread_ratio_and_mfu():
    pair = _pair(["main.py"])
    pair.ours, pair.theirs = [1200.0, 1000.0, 1100.0], [1000.0, 1000.0, 900.0]
    pair.ours_rss, pair.theirs_rss, pair.score = [500.0] * 3, [400.0] * 3, [50.0] * 3
    train, score = pair.summary(2, peak=1.0e10, missing="pass --wlm-dir")
    assert train.startswith("LSTM, 2 threads: ours 1,100 (min 1,000, max 1,200) tok/s")
    assert "MFU 110.00%" in train and "wlm 1,000 (min 900, max 1,000) tok/s" in train
    assert "ratio 1.10x (back-to-back pairs: median 1.20x, min 1.00x, max 1.22x)" in train
    assert score.startswith("LSTM, 2 threads, scoring (ours): 50 (min 50, max 50) tok/s")


def test_summary_says_a_missing_peer_is_missing():
    pair = _pair(None)
    pair.ours, pair.ours_rss, pair.score = [1000.0], [500.0], [50.0]
    train, _ = pair.summary(1, peak=None, missing="pass --wlm-dir")
    assert "1 thread:" in train and "MFU missing (no peak FLOP/s)" in train
    assert train.endswith("wlm: not run (pass --wlm-dir), ratio missing")
