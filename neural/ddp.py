"""Data-parallel training of one torch model over several processes, launched with torchrun.

A :class:`~lmladder.neural.torchlm.TorchLM` whose config says ``processes = N`` (N > 1) trains as N
replicas of its network: ``fit`` writes a job folder, runs the real launcher
(``python -m torch.distributed.run --standalone --nproc-per-node N -m lmladder.neural.ddp JOB``)
and waits for it, then loads the trained weights into the model and returns rank 0's
:class:`~lmladder.api.FitReport`.  Nothing else changes: the harness, records, scoring, saved
models and tasks see an ordinary fitted model, and a matrix asks for it with
``config = { processes = 2 }``.  The backend is gloo on the CPU and NCCL on CUDA, where replica
``i`` uses ``cuda:i``; other devices are refused.

What the replicas compute
-------------------------
Every replica builds the same network (same seed), wraps it in ``DistributedDataParallel`` and
runs the one training loop of :mod:`lmladder.neural.loop`.  Each draws the *whole* batch of
``batch_size`` rows, exactly as a single process would, and trains on its own ``batch_size / N``
contiguous rows of it (so ``batch_size`` must be a multiple of N; a stream's rows keep their
hidden state on the replica that owns them).  The loss is the mean over a replica's tokens and
``DistributedDataParallel`` averages the gradients of equal shares, so the update is that of one
process with the whole batch, gradient clipping included (the clip sees the averaged gradient);
with no dropout the weights match a single-process fit to float rounding.  (``hf-bert``'s loss is
a mean over the masked tokens, whose number differs between shares, so there the update is close
to, not equal to, the whole batch's.)  Replicas other than rank 0 draw their own dropout masks.

Rank 0 leads: before every optimizer step it broadcasts whether training goes on and the learning
rate, so a budget in seconds, the plateau schedule or a stop request end every replica at the same
step and nobody waits forever at a collective.  Budgets count the tokens of whole batches (all
ranks together), and a time budget covers the whole ``fit``, the launch of the workers included.
Rank 0 alone evaluates on valid (the others wait at the next step), keeps the best weights,
writes its progress events and, at the end, saves the network with the contract's ``save`` and
its FitReport as JSON into the job folder.  The training loss in the history is the mean over all
replicas.  The report notes ``processes`` and ``backend`` (also for a single-process fit: 1 and
``None``), so records of both have the same schema.

The launching process relays rank 0's progress events to ``fit``'s callback while it waits (it
looks for new ones every 0.2 s); a callback that raises ``StopTraining`` stops the replicas at
their next step after the launcher has seen it (so a few steps later than in one process), and
``fit`` returns the weights so far with ``interrupted`` noted.  A worker that fails makes
``fit`` raise a one-line RuntimeError with the first failing rank and its error (or, for a worker
killed without a Python error, the last line it wrote to stderr).

Limits: ``fit(resume=True)`` is refused (the training state lives in the workers, which are gone);
the model class must be importable by a fresh Python process (not in ``__main__`` or a function);
torch threads (the cell's ``threads``) are divided among the replicas; a cell's memory figures
count the launching process only, not the workers.  Workers die with the launcher
(``PR_SET_PDEATHSIG`` on Linux), so a cell stopped for its time limit leaves nothing running.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lmladder.api import (
    Budget,
    FitReport,
    LanguageModel,
    Progress,
    ProgressCallback,
    Vocab,
    read_state_arrays,
)
from lmladder.process import die_with_parent

# The job folder: what the launcher writes for the workers and what rank 0 writes back.
SPEC, TRAIN, VALID = "spec.json", "train.npy", "valid.npy"
MODEL, REPORT, EVENTS, STOP = "model", "report.json", "events.jsonl", "stop"
POLL_S = 0.2  # how often the launcher relays progress events while it waits
# Rank 0 evaluates on valid while the others wait at the next step's broadcast; a dead worker is
# noticed by torchrun, which stops the rest, so this timeout only has to outlast an evaluation.
COLLECTIVE_TIMEOUT = timedelta(hours=24)


# --------------------------------------------------------------------------------------------
# The processes a fit trains in, as the training loop sees them


class World:
    """The processes one ``fit`` trains in: this base is a single process, where every method is
    the identity.  The loop calls ``wrap`` once, then for every optimizer step ``agree`` before
    it, ``shard`` on its batch and ``mean`` on its loss."""

    size: int = 1
    backend: str | None = None
    seconds_before: float = 0.0  # spent on this fit before the loop's clock started (launching)
    interrupted: bool = False  # training was stopped from outside the loop

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """The network the loop runs forward and backward."""
        return module

    def agree(self, go: bool, lr: float) -> tuple[bool, float]:
        """Whether to take another step, and its learning rate, as the leader decided."""
        return go, lr

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's rows of a batch (int64 ``(B, T)`` inputs and targets)."""
        return x, y

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over the processes."""
        return value


class TorchrunWorld(World):
    """One replica of a torchrun job whose process group is initialised; rank 0 leads.

    ``stop_file`` appearing asks the leader to stop before its next step (the launcher's
    callback raised ``StopTraining``); ``interrupted`` then says it did.
    """

    def __init__(self, device: str, *, seconds_before: float, stop_file: Path):
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.backend = dist.get_backend()
        self.device, self.seconds_before, self.stop_file = device, seconds_before, stop_file
        self.interrupted = False

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.rank:  # replicas draw their own dropout masks; rank 0 those of a single process
            torch.manual_seed(torch.initial_seed() + self.rank)
        device = torch.device(self.device)
        return DistributedDataParallel(module,
                                       device_ids=[device] if device.type == "cuda" else None)

    def agree(self, go: bool, lr: float) -> tuple[bool, float]:
        if self.rank == 0 and go and self.stop_file.exists():
            go, self.interrupted = False, True
        decision = torch.tensor([float(go), lr], dtype=torch.float64, device=self.device)
        dist.broadcast(decision, src=0)
        return bool(decision[0]), float(decision[1])

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = len(x) // self.size
        mine = slice(self.rank * rows, (self.rank + 1) * rows)
        return x[mine], y[mine]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        total = value.detach().clone()
        dist.all_reduce(total)  # gloo has no AVG
        return total / self.size


# --------------------------------------------------------------------------------------------
# The launching process


def fit_distributed(model: LanguageModel, train: np.ndarray, vocab: Vocab, *, budget: Budget,
                    valid: np.ndarray | None, callback: ProgressCallback | None,
                    stop: type[BaseException]) -> FitReport:
    """Train ``model`` (a TorchLM with ``cfg.processes`` > 1) with torchrun; see the module docs.

    ``budget`` must already be bounded; ``stop`` is the exception (``StopTraining``) by which
    ``callback`` asks to end training cleanly.  Afterwards the model holds the trained weights
    (no training state); the report's ``seconds`` is this call's wall time.
    """
    started = time.time()
    n = model.cfg.processes
    backend = backend_for(model.device, n)
    klass = type(model)
    if klass.__module__ == "__main__" or "<locals>" in klass.__qualname__:
        where = "__main__" if klass.__module__ == "__main__" else "a function"
        raise ValueError(f"processes = {n}: the worker processes must import "
                         f"{klass.__qualname__}, which is defined in {where}; define it at the "
                         "top level of a module")
    with tempfile.TemporaryDirectory(prefix="lmladder-ddp-") as tmp:
        job = Path(tmp)
        np.save(job / TRAIN, np.asarray(train, dtype=np.int64))
        if valid is not None:
            np.save(job / VALID, np.asarray(valid, dtype=np.int64))
        spec = {"class": f"{klass.__module__}:{klass.__qualname__}",  # what the workers import
                "config": {**model.config(), "processes": 1},
                "vocab": vocab.to_dict(), "budget": dataclasses.asdict(budget),
                "backend": backend, "started": started}
        (job / SPEC).write_text(json.dumps(spec))
        code = _run_torchrun(job, n, callback, stop)
        if code != 0:
            raise RuntimeError(f"data-parallel fit ({n} {backend} processes) failed: "
                               f"{_failure(job, code)}")
        report = FitReport(**json.loads((job / REPORT).read_text()))
        model.vocab_ = vocab
        model._load_state_arrays(read_state_arrays(job / MODEL / "state.npz"))
    report.seconds = time.time() - started
    return report


def backend_for(device: str, processes: int) -> str:
    """The torch.distributed backend for ``processes`` replicas on ``device`` (a resolved
    device name), or ValueError saying why that cannot work."""
    kind = torch.device(device).type
    if kind == "cpu":
        return "gloo"
    if kind != "cuda":
        raise ValueError(f"processes = {processes} trains on cpu (gloo) or cuda (NCCL), "
                         f"not {device!r}")
    found = torch.cuda.device_count()
    if found < processes:
        raise ValueError(f"processes = {processes} needs {processes} CUDA devices (one per "
                         f"replica), this machine has {found}")
    return "nccl"


def _run_torchrun(job: Path, n: int, callback: ProgressCallback | None,
                  stop: type[BaseException]) -> int:
    """Run the job and relay its progress events until it ends; its exit code.  Anything the
    callback raises other than ``stop`` ends the workers and propagates."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={n}", "-m", __name__, str(job)]
    env = {
        **os.environ,
        # this process's torch threads (a cell's ``threads``), shared out among the replicas
        "OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // n)),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),  # import what this process can
    }
    events = _Events(job / EVENTS)
    with open(job / "torchrun.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=functools.partial(die_with_parent, os.getpid()))
    try:
        while True:
            try:
                code = proc.wait(POLL_S)
            except subprocess.TimeoutExpired:
                code = None
            for progress in events.read():
                if callback is not None and not (job / STOP).exists():
                    try:
                        callback(progress)
                    except stop:
                        (job / STOP).touch()
            if code is not None:
                return code
    except BaseException:
        _end(proc)
        raise


def _end(proc: subprocess.Popen) -> None:
    """Stop torchrun, which stops its workers (SIGTERM; SIGKILL if it does not end soon)."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _failure(job: Path, code: int) -> str:
    """Why the job failed, in one line: the first rank that raised and its error; else the last
    line a worker wrote to stderr; else torchrun's exit code."""
    errors = [json.loads(p.read_text()) for p in job.glob("failed-*.json")]
    if errors:
        first = min(errors, key=lambda e: e["time"])
        return f"rank {first['rank']}: {first['error']}"
    for path in sorted(job.glob("rank*.stderr")):
        lines = path.read_text(errors="replace").strip().splitlines()
        if lines:
            return (f"{path.stem.replace('rank', 'rank ')} wrote {lines[-1].strip()!r} "
                    f"(torchrun exit code {code})")
    return (f"torchrun exit code {code}, no worker wrote an error (a worker killed by signal 9 "
            "is likely out of memory)")


class _Events:
    """Rank 0's progress events as JSON lines in a file: appended by the worker, read by the
    launcher as they come (a line still being written waits for the next read)."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def write(self, progress: Progress) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(progress)) + "\n")

    def read(self) -> list[Progress]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        return [Progress(**json.loads(line)) for line in chunk[:end].splitlines()]


# --------------------------------------------------------------------------------------------
# A worker process (started by torchrun)


def main(argv: Sequence[str] | None = None) -> None:
    """One torchrun worker: ``python -m lmladder.neural.ddp JOB`` with torchrun's environment
    (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, the rendezvous).  Its stderr goes to
    ``JOB/rank<R>.stderr``; an error is also recorded for the launcher's one-line message."""
    job = Path(sys.argv[1] if argv is None else argv[0])
    rank = int(os.environ["RANK"])
    die_with_parent(os.getppid())
    with open(job / f"rank{rank}.stderr", "ab") as log:
        os.dup2(log.fileno(), sys.stderr.fileno())
    try:
        _replica(job, rank)
    except BaseException as err:
        text = " ".join(str(err).split())
        record = {"rank": rank, "time": time.time(),
                  "error": f"{type(err).__name__}: {text}" if text else type(err).__name__}
        (job / f"failed-{rank}.json").write_text(json.dumps(record))
        raise


def _replica(job: Path, rank: int) -> None:
    """Train this rank's replica; rank 0 writes the weights and the report into ``job``."""
    spec = json.loads((job / SPEC).read_text())
    device = f"cuda:{os.environ['LOCAL_RANK']}" if spec["backend"] == "nccl" else "cpu"
    if device != "cpu":
        torch.cuda.set_device(device)
    dist.init_process_group(spec["backend"], timeout=COLLECTIVE_TIMEOUT)
    try:
        model = _import_class(spec["class"])(**spec["config"]).to(device)
        leader = rank == 0
        train = np.load(job / TRAIN)
        valid = np.load(job / VALID) if leader and (job / VALID).exists() else None
        callback = _Events(job / EVENTS).write if leader else None
        world = TorchrunWorld(device, seconds_before=time.time() - spec["started"],
                              stop_file=job / STOP)
        report = model._fit(train, Vocab.from_dict(spec["vocab"]),
                            budget=Budget(**spec["budget"]), valid=valid, callback=callback,
                            resume=False, world=world)
        if leader:
            model.save(job / MODEL)
            (job / REPORT).write_text(json.dumps(dataclasses.asdict(report)))
    finally:
        dist.destroy_process_group()


def _import_class(target: str) -> type:
    """The class named ``"module:QualName"`` (as the launcher wrote it from the model's type):
    the worker imports the model's own module, not the runner's registry."""
    module, _, qualname = target.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


if __name__ == "__main__":
    main()
