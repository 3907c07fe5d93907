"""Compiled backoff queries (numba): one pass over the token stream, as KenLM's ``query`` walks it.

Why compiled, and why this layout: the vectorized query answered each order for all positions at
once with a ``searchsorted`` over the whole sorted table -- a dozen cache misses per lookup and an
extra pass per order for the contexts.  Walking the stream instead:

* the n-grams found ending at position ``t - 1`` *are* the contexts of position ``t`` (the
  context ``seq[t-l..t-1]`` is the ``l``-gram ending at ``t - 1``), so contexts cost no lookup:
  their backoff weights were read with them;
* each order ``j >= 2`` is an open-addressing hash table (linear probing, at most 3/4 full) whose
  slots hold ``(key, ln p, ln backoff)``, so a lookup mostly reads one cache line for all three;
* the key is exact -- ``slot of the suffix in order j - 1 * V + first token`` (the token id at
  order 1), which names one n-gram -- but the slot where probing *starts* comes from a hash of
  the tokens alone.  So the slots a position will read are known from the tokens, before any
  lookup: the walk asks the processor to prefetch them a few positions ahead (a lookup is a
  cache miss, and a miss ends most walks with a mispredicted branch that would otherwise stall
  the next position's loads), while the keys still decide every match exactly.

Scores are bit-for-bit those of the vectorized reference (tests/test_ngram_kernels.py): the same
float64 values are added in the same order, the backoff weights shortest context first.

numba compiles on the first call per machine (``cache=True`` keeps the machine code beside this
file); a fresh process still pays numba's import and loading the cached code (~1 s on 2 cores).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

EMPTY = -1  # key of a free slot (keys are >= 0)
KEY, LOGP, BOW = 0, 1, 2  # the columns of a slot; LOGP and BOW hold float64 bits
MAX_LOAD = 0.75
_SEED = np.uint64(0x9E3779B97F4A7C15)
_MULT = np.uint64(0xBF58476D1CE4E5B9)
AHEAD = 4  # positions prefetched ahead (PTB KN5, 2-core EPYC: 0.36 s -> 0.20 s; 8 and 16 slower)


@intrinsic
def _prefetch(typingctx, table, row):
    """Ask the processor to fetch the cache line of ``table[row, 0]`` (a 2-D array) for reading,
    without waiting for it (LLVM's ``llvm.prefetch``)."""
    if not (isinstance(table, types.Array) and table.ndim == 2
            and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        zero = ir.Constant(ir.IntType(64), 0)
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], array,
                                       [args[1], zero])
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [byte_ptr],
            ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]))
        # read (0), keep in all cache levels (3), data cache (1)
        builder.call(fn, [builder.bitcast(ptr, byte_ptr), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(table, row), codegen


@numba.njit(cache=True)
def _mix(h, token):
    """Hash of an n-gram extended one token to the left, from the hash ``h`` of its suffix."""
    z = (h ^ np.uint64(token)) * _MULT
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _home(h, mask):
    """The slot where probing starts for an n-gram hashed to ``h`` (tables of <= 2**32 slots)."""
    return np.int64(h >> np.uint64(32)) & mask


@numba.njit(cache=True)
def unigram_hashes(vocab_size):
    """uint64 ``(V,)``: the hash of each token as a unigram."""
    out = np.empty(vocab_size, dtype=np.uint64)
    for w in range(vocab_size):
        out[w] = _mix(_SEED, w)
    return out


@numba.njit(cache=True)
def fill_order(slots, values, keys, logp, bow, below_slot, below_hash, vocab_size):
    """Insert one order's n-grams into its empty table ``slots`` (int64 ``(2**b, 3)``, key column
    ``EMPTY``; ``values`` is its float64 view).  ``keys``: the order's sorted table keys (row of
    the suffix below * V + first token); ``below_slot``/``below_hash``: slot and hash of each row
    of the order below.  Returns this order's ``(slot, hash)`` per row, for the order above."""
    mask = len(slots) - 1
    slot_of = np.empty(len(keys), dtype=np.int64)
    hash_of = np.empty(len(keys), dtype=np.uint64)
    for row in range(len(keys)):
        hash_of[row] = _mix(below_hash[keys[row] // vocab_size], keys[row] % vocab_size)
    for row in range(len(keys)):
        # inserts land at random slots: fetch a later row's while this one probes (PTB KN5's
        # four tables: 0.17 s -> 0.10 s)
        if row + AHEAD < len(keys):
            _prefetch(slots, _home(hash_of[row + AHEAD], mask))
        s = _home(hash_of[row], mask)
        while slots[s, KEY] != EMPTY:
            s = (s + 1) & mask
        suffix, first = keys[row] // vocab_size, keys[row] % vocab_size
        slots[s, KEY] = below_slot[suffix] * vocab_size + first
        values[s, LOGP] = logp[row]
        values[s, BOW] = bow[row]
        slot_of[row] = s
    return slot_of, hash_of


def hash_orders(keys: list[np.ndarray], logp: list[np.ndarray], bow: list[np.ndarray],
                vocab_size: int) -> tuple[np.ndarray, ...]:
    """The hash tables of orders ``2..n`` (int64 ``(slots, 3)``, see the module docstring), from
    backoff tables' per-order sorted ``keys``, ``logp`` and ``bow``."""
    below_slot = np.arange(vocab_size, dtype=np.int64)
    below_hash = unigram_hashes(vocab_size)
    out = []
    for k, p, b in zip(keys[1:], logp[1:], bow[1:], strict=True):
        bits = max(1, math.ceil(math.log2(len(k) / MAX_LOAD + 1)))
        slots = np.full((1 << bits, 3), EMPTY, dtype=np.int64)
        below_slot, below_hash = fill_order(
            slots, slots.view(np.float64), np.ascontiguousarray(k, dtype=np.int64),
            np.ascontiguousarray(p, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64),
            below_slot, below_hash, vocab_size)
        out.append(slots)
    return tuple(out)


@numba.njit(cache=True)
def _find(slots, h, key):
    """Slot of ``key`` (probing from ``h``'s home slot), or -1."""
    mask = len(slots) - 1
    s = _home(h, mask)
    while True:
        k = slots[s, KEY]
        if k == key:
            return s
        if k == EMPTY:
            return -1
        s = (s + 1) & mask


@numba.njit(cache=True)
def score_stream(seq, hist, slots, values, logp1, bow1, flat, log_v):
    """ln p(seq[t] | history) for ``t = 1..N``, float64 ``(N,)``.

    ``seq``: int64 ``(N + 1,)``, the initial boundary first; ``hist``: int64 ``(N,)`` tokens of
    history usable at each position, at most ``order - 1`` and growing by at most one per position
    (``hist[t] <= hist[t - 1] + 1``: a history is cut, never extended backwards, which is what
    lets position ``t`` reuse what was found at ``t - 1``).  ``slots``: the tuple of
    :func:`hash_orders` tables, ``values`` their float64 views; ``logp1``/``bow1``: the unigrams'
    ln p and ln backoff; ``flat``: add-k's uniform base (``log_v = ln V``).  See
    :class:`~lmladder.baselines.ngram_backoff.BackoffTables` for the query.
    """
    n = len(slots) + 1
    v = len(logp1)
    out = np.empty(len(hist))
    # slot (token id at order 1) and ln backoff of the j-gram ending at t - 1, at index j - 1
    prev_slot, prev_bow = np.full(n, -1, dtype=np.int64), np.zeros(n)
    cur_slot, cur_bow = np.full(n, -1, dtype=np.int64), np.zeros(n)
    prev_slot[0], prev_bow[0] = seq[0], bow1[seq[0]]
    for t in range(1, len(seq)):
        ahead = t + AHEAD
        if ahead < len(seq):
            h = _mix(_SEED, seq[ahead])
            for j in range(2, min(n, hist[ahead - 1] + 1) + 1):
                h = _mix(h, seq[ahead - j + 1])
                _prefetch(slots[j - 2], _home(h, len(slots[j - 2]) - 1))
        m = hist[t - 1]
        s = seq[t]
        h = _mix(_SEED, s)
        lp = logp1[s]
        cur_slot[0], cur_bow[0] = s, bow1[s]
        longest = 1
        for j in range(2, min(n, m + 1) + 1):
            first = seq[t - j + 1]
            h = _mix(h, first)
            s = _find(slots[j - 2], h, s * v + first)
            if s < 0:
                break
            lp = values[j - 2][s, LOGP]
            cur_slot[j - 1], cur_bow[j - 1] = s, values[j - 2][s, BOW]
            longest = j
        for j in range(longest, n):
            cur_slot[j] = -1
        if flat:
            if longest == m + 1:
                out[t - 1] = lp
            elif m >= 1 and prev_slot[m - 1] >= 0:
                out[t - 1] = prev_bow[m - 1] - log_v
            else:
                out[t - 1] = -log_v
        else:
            # shortest context first: the order BackoffTables.distributions adds them in, so
            # step() and token_logprobs round alike
            for lvl in range(longest, min(m, n - 1) + 1):
                if prev_slot[lvl - 1] < 0:
                    break
                lp += prev_bow[lvl - 1]
            out[t - 1] = lp
        prev_slot, cur_slot = cur_slot, prev_slot
        prev_bow, cur_bow = cur_bow, prev_bow
    return out
