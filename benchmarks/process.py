"""Process plumbing shared by the runner and the model families; imports nothing of lmladder.

``lmladder.isolate`` runs every cell in a child process and ``lmladder.neural.ddp`` starts
torchrun's workers; both ask that their children die with them, so a killed run leaves nothing
computing for nobody.  The rule lives here, below both, so a family never imports the runner.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator


def die_with_parent(parent: int) -> None:
    """On Linux, ask the kernel to kill this child when its parent dies (a killed run must not
    leave cells computing for nobody, holding their locks and its output pipes).

    Call it in the child with the parent's pid (``os.getppid()`` in the child, or ``os.getpid()``
    in the parent for a ``preexec_fn``): if that process is already gone, the child exits.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def return_free_memory() -> None:
    """Give the memory freed on the C heap back to the system (glibc's ``malloc_trim``; nothing
    elsewhere).  glibc keeps freed blocks below its mmap threshold, which rises as large arrays
    are freed, so after a phase that made many temporaries the process keeps them resident: the
    n-gram fit left 86 MiB of PTB KN5's counting arrays in the heap (issue 24)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)


_BLAS = None  # threadpoolctl's controller of the BLAS libraries, found on first use


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """numpy's BLAS on ``n`` threads inside the block (``None``: as it is), by threadpoolctl: the
    HMM's CPU path multiplies with it, as torch's models use torch's threads.  The libraries are
    found once (~0.4 ms); scoping them then costs ~10 us."""
    global _BLAS
    if n is None:
        yield
        return
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    with _BLAS.limit(limits=int(n), user_api="blas"):
        yield
