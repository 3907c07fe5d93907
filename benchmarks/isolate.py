"""Run one piece of work in a child process with a wall-clock and a memory limit, and claim
cells with locks that die with their process.

A matrix cell runs in its own process so that whatever happens inside it -- the kernel's OOM
killer, a segfault in a native library, a fit that never ends -- becomes a failed cell with its
reason, and the run goes on.  The child sends progress events and finally its answer through a
pipe; the parent turns a missing answer into an :class:`Outcome` that says why.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs are not coordinated there
    fcntl = None

try:
    import resource
except ImportError:  # Windows
    resource = None

from lmladder.files import open_nofollow, refuse_link
from lmladder.process import die_with_parent


@dataclass
class Outcome:
    """What became of a child: its ``value``, or ``error`` = (type, one-line reason)."""

    value: Any = None
    error: tuple[str, str] | None = None
    seconds: float = 0.0


SIGNAL_HINTS = {
    signal.SIGKILL: "likely out of memory (the kernel's OOM killer sends it), or killed by hand",
    signal.SIGSEGV: "a crash in native code (segmentation fault)",
    signal.SIGABRT: "a native library aborted",
    signal.SIGBUS: "a crash in native code (bus error)",
    signal.SIGTERM: "terminated from outside",
}


def describe_exit(code: int | None) -> tuple[str, str]:
    """Why a child that sent no answer ended, as (error type, one-line reason)."""
    if code is not None and code < 0:
        sig = signal.Signals(-code)
        hint = SIGNAL_HINTS.get(sig, "ended by a signal")
        return "Killed", f"killed by signal {-code} ({sig.name}) — {hint}"
    return "ChildExited", f"the cell's process exited with code {code} without a result"


def _context() -> multiprocessing.context.BaseContext:
    # fork shares the parent's loaded datasets and registered models for free; elsewhere spawn.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def run_in_child(
    work: Callable[..., Any],
    args: tuple,
    *,
    time_limit: float | None,
    memory_limit_mib: int | None = None,
    on_message: Callable[[Any], None] | None = None,
) -> Outcome:
    """Call ``work(send, *args)`` in a child process and return its answer.

    ``send(message)`` lets the child report progress (``on_message`` receives it in the parent).
    The child is killed when it runs past ``time_limit`` seconds; ``memory_limit_mib`` bounds its
    address space, so an allocation past it raises MemoryError inside the child.
    """
    parent_end, child_end = _context().Pipe(duplex=False)
    proc = _context().Process(
        target=_child_main, args=(child_end, work, args, memory_limit_mib, os.getpid()),
        daemon=True,
    )
    start = time.monotonic()
    deadline = None if time_limit is None else start + time_limit
    outcome = None
    try:
        proc.start()  # inside the try: Ctrl-C right after the fork must still kill the child
        child_end.close()
        while outcome is None:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            if parent_end.poll(wait):
                try:
                    kind, payload = parent_end.recv()
                except (EOFError, OSError):  # the child is gone without an answer
                    proc.join(5)
                    outcome = Outcome(error=describe_exit(proc.exitcode))
                    break
                if kind == "message":
                    if on_message is not None:
                        on_message(payload)
                else:
                    outcome = Outcome(value=payload)
            elif deadline is not None and time.monotonic() >= deadline:
                _kill(proc)
                outcome = Outcome(error=(
                    "TimeLimit",
                    f"exceeded the cell time limit of {time_limit:g} s and was stopped "
                    "(raise it with time_limit in the matrix or --time-limit)",
                ))
            elif not proc.is_alive() and not parent_end.poll(0):
                proc.join(5)
                outcome = Outcome(error=describe_exit(proc.exitcode))
    except BaseException:  # Ctrl-C in the parent: the child must not outlive it
        _kill(proc)
        raise
    finally:
        parent_end.close()
    proc.join(5)
    if proc.is_alive():
        _kill(proc)
    outcome.seconds = time.monotonic() - start
    return outcome


def _kill(proc) -> None:
    """Kill the cell's process and whatever it started (its process group)."""
    if proc.pid is None:  # never started
        return
    with contextlib.suppress(ProcessLookupError, PermissionError, AttributeError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.join(10)


def _child_main(conn, work, args, memory_limit_mib, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C does
    with contextlib.suppress(OSError, AttributeError):
        os.setpgid(0, 0)  # a group of its own, so a kill also reaches the workers it starts
    die_with_parent(parent)
    if memory_limit_mib is not None and resource is not None:
        limit = int(memory_limit_mib) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def send(message) -> None:
        conn.send(("message", message))

    answer = work(send, *args)
    conn.send(("answer", answer))
    conn.close()


def memory_error_message(limit_mib: int | None) -> str:
    if limit_mib:
        return out_of_memory_message("MemoryError", limit_mib)
    return "ran out of memory (MemoryError): the cell needs more than the machine's memory"


# How running out of address space under RLIMIT_AS shows, besides MemoryError: native libraries
# that cannot map their code or allocate (oneDNN, OpenMP, numba's llvmlite, C++ bad_alloc), and
# threads that cannot get a stack.
MEMORY_SIGNS = (
    "out of memory", "allocate memory", "bad_alloc", "failed to allocate", "could not allocate",
    "unable to allocate", "can't allocate", "could not create a primitive", "shared object",
    "failed to map segment", "mmap", "can't start new thread", "pthread_create", "errno 12",
    "memoryerror",
)
KILLED_BY_LIMIT = ("SIGKILL", "SIGABRT", "SIGSEGV", "SIGBUS")


def out_of_memory_message(reason: str, limit_mib: int) -> str:
    """The one line of a cell that ran out of its address space; ``reason`` is what it died of."""
    return (f"ran out of memory under --memory-limit {limit_mib} MiB ({reason}); raise the "
            f"cell's memory limit of {limit_mib} MiB (--memory-limit MIB, or memory_limit_mib "
            "in the matrix)")


def memory_limit_explains(kind: str, message: str, limit_mib: int | None) -> str | None:
    """The out-of-memory line for a cell that failed with ``kind: message`` under a memory limit
    of ``limit_mib`` MiB, where the failure looks like the limit's doing (a MemoryError, a native
    library unable to allocate or map memory; a death by SIGKILL/SIGABRT/SIGSEGV keeps its own
    message first and says the limit may be why); else None."""
    if not limit_mib or "--memory-limit" in message:  # said already
        return None
    first = (message.strip().splitlines() or [""])[0]
    first = first if len(first) <= 120 else first[:119] + "…"
    text = f"{kind} {first}".lower()
    if kind == "Killed":  # a signal says only that it may have been memory: the cause first
        if not any(name in first for name in KILLED_BY_LIMIT):
            return None
        return (f"{message.strip()}; it ran under --memory-limit {limit_mib} MiB: if it ran out "
                f"of memory, raise the cell's memory limit of {limit_mib} MiB (--memory-limit "
                "MIB, or memory_limit_mib in the matrix)")
    if kind == "MemoryError" or any(sign in text for sign in MEMORY_SIGNS):
        return out_of_memory_message(f"{kind}: {first}" if first else kind, limit_mib)
    return None


class CellLock:
    """An exclusive claim on one cell, held by an open file with ``flock``: the kernel releases
    it when the holder exits in any way, so a killed run never leaves a cell stuck."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = None

    def acquire(self, *, block: bool) -> bool:
        if fcntl is None:
            return True
        refuse_link(self.path.parent)  # a planted .locks link or lock link is never followed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # held open for the lock's lifetime; O_NOFOLLOW, so a planted link is refused
        f = os.fdopen(open_nofollow(self.path, os.O_RDWR | os.O_CREAT, folder=True), "r+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            return False
        except BaseException:
            f.close()
            raise
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None
