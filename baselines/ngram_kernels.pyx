# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""The n-gram family's compiled core (Cython, built when lmladder is installed): hashed backoff
tables in one flat image, the stream walk that scores with them, and the word reader that turns
text into ids.

Why compiled ahead of time: this module imports in about a millisecond and pulls in neither
numpy nor a JIT, so ``lmladder score`` (:mod:`lmladder.query`) runs as a lean process, as KenLM's
``query`` does.  numba, which compiled these loops before, cost every process 0.3 s and 70 MiB
to import and ~0.3 s more to load its cached machine code (measured in issue 24).

The image
---------
One buffer holds everything scoring needs, laid out by :func:`layout` (int64 little-endian
fields, 8-byte aligned sections)::

    header      magic, version, order n, V, flags (1: flat add-k, 2: cross_boundary),
                boundary id, unknown id (-1: none), the word section's and the unigrams'
                offsets, the vocabulary's sha256 (64 ASCII bytes), then per order j = 2..n
                (keys offset, values offset, slots, values per slot, key bytes)
    words       the vocabulary's UTF-8 bytes, V + 1 offsets into them, and an open-addressing
                table of word ids keyed by FNV-1a of the bytes (at most half full)
    unigrams    ln p and ln backoff by id (float64)
    order j     ``slots`` keys -- uint32 (2**32 - 1: free) where every key fits, else int64
                (-1: free) -- then per slot ln p and, below the top order, ln backoff (float64)

:class:`Image` reads that layout from any buffer: a numpy array built in memory
(:mod:`lmladder.baselines.ngram_image`) or the file it was saved to, memory-mapped read-only, so
loading a saved model parses no text and copies nothing, and processes share its pages.

Hashing
-------
Order ``j``'s key is exact -- ``slot of the suffix in order j - 1 * V + first token`` (the token
id at order 1), which names one n-gram -- but the slot where probing *starts* comes from a hash
of the tokens alone.  So the walk knows which slots a position will read before any lookup, and
asks the processor to prefetch them a few positions ahead (a lookup is a cache miss), while the
keys still decide every match exactly.  Linear probing from ``home = (h >> 32) * slots >> 32``;
tables are 4/5 full (:data:`MAX_LOAD`), not the half to three quarters of power-of-two sizes,
and the keys sit apart from the values, so a probe run reads 8 keys (16 where they fit in 4
bytes) per cache line.

The walk
--------
The n-grams found ending at position ``t - 1`` *are* the contexts of position ``t``, so contexts
cost no lookup: their backoff weights were read with them.  Scores are bit-for-bit those of the
vectorized query (tests/test_ngram_kernels.py): the same float64 values are added in the same
order, the backoff weights shortest context first.

Words
-----
What counts as a word is what ``str.split()`` does on the decoded text: runs of anything but
Unicode whitespace (the ASCII controls 9-13 and 28-31, space, U+0085, U+00A0, U+1680,
U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).  Lines end at ``\\n`` only (a ``\\r``
before it is whitespace), and every line, the last one included when the text does not end in
``\\n``, is followed by the boundary token: ``"a b\\n\\nc"`` reads ``a b <eos> <eos> c <eos>``.
"""

from libc.math cimport log
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memmove


cdef extern from *:
    void prefetch "__builtin_prefetch"(const void *addr) nogil


MAGIC = b"lmlNgram"
VERSION = 1
# PTB KN5, the test split x20 (issue 24, 2-core EPYC): at 0.7 / 0.75 / 0.8 / 0.85 full the image
# is 63.3 / 59.1 / 55.5 / 52.2 MiB and the walk takes ~0.13 / 0.15 / 0.15 / 0.18 s
MAX_LOAD = 0.8
cdef enum:
    FLAT_BIT = 1  # flags
    CROSS_BIT = 2
    NO_ID = -1  # the id of a word the vocabulary lacks when it has no unknown word
    MAX_ORDER = 32
    AHEAD = 4  # positions prefetched ahead (PTB KN5, 2-core EPYC: 0.36 s -> 0.20 s; 8, 16 slower)
    FIXED = 14  # int64 header fields before the sha256
    SHA = 64
    PER_ORDER = 5  # header fields per order j >= 2
HEADER_FIXED = FIXED * 8 + SHA
FLAT, CROSS_BOUNDARY, UNKNOWN = FLAT_BIT, CROSS_BIT, NO_ID

cdef int64_t NARROW_FREE = 0xFFFFFFFF  # a free slot of a table with 4-byte keys
cdef uint64_t SEED = 0x9E3779B97F4A7C15ULL
cdef uint64_t MULT = 0xBF58476D1CE4E5B9ULL
cdef uint64_t FNV_OFFSET = 0xCBF29CE484222325ULL
cdef uint64_t FNV_PRIME = 0x100000001B3ULL


cdef inline uint64_t mix(uint64_t h, uint64_t token) noexcept nogil:
    """Hash of an n-gram extended one token to the left, from the hash ``h`` of its suffix."""
    cdef uint64_t z = (h ^ token) * MULT
    return z ^ (z >> 31)


cdef inline int64_t home(uint64_t h, int64_t slots) noexcept nogil:
    """The slot where probing starts for an n-gram hashed to ``h`` (tables of < 2**32 slots)."""
    return <int64_t>(((h >> 32) * <uint64_t>slots) >> 32)


def table_slots(int64_t ngrams):
    """Slots of a table holding ``ngrams`` n-grams at most :data:`MAX_LOAD` full."""
    cdef int64_t slots = <int64_t>(ngrams / MAX_LOAD) + 1
    if slots >= (<int64_t>1 << 32):
        raise ValueError(f"{ngrams:,} n-grams of one order: more than a table of 2**32 slots "
                         "holds")
    return slots


def word_table_slots(int64_t words):
    """Slots of the word table (a power of two, at most half full)."""
    cdef int64_t size = 2
    while size < 2 * words:
        size *= 2
    return size


def key_bytes(int64_t below_slots, int64_t vocab_size):
    """Bytes of an order's keys: 4 when every key (< slots of the order below * V) fits below
    the free mark 2**32 - 1, else 8."""
    return 4 if below_slots * vocab_size < NARROW_FREE else 8


def layout(int order, int64_t vocab_size, int64_t blob_bytes, int64_t word_slots, slots):
    """The image's sections for these sizes: ``(header_bytes, starts, orders, total_bytes)``:
    the header's int64 fields after the fixed ones, in the module docstring's order -- the
    offsets of the blob, word offsets, word table, unigram ln p and unigram ln backoff, then per
    order ``j >= 2`` keys offset, values offset, slots, values per slot, key bytes."""
    header = FIXED * 8 + SHA + 8 * PER_ORDER * (order - 1)
    sizes = [blob_bytes, 8 * (vocab_size + 1), 8 * word_slots, 8 * vocab_size, 8 * vocab_size]
    widths = []
    below = vocab_size  # a unigram's slot is its id
    for j in range(2, order + 1):
        width, key = 1 if j == order else 2, key_bytes(below, vocab_size)
        widths.append((width, key))
        sizes += [key * slots[j - 2], 8 * width * slots[j - 2]]
        below = slots[j - 2]
    starts, at = [], header
    for nbytes in sizes:
        starts.append(at)
        at += (nbytes + 7) // 8 * 8
    orders = []
    for j in range(2, order + 1):
        i = 5 + 2 * (j - 2)
        orders += [starts[i], starts[i + 1], slots[j - 2], *widths[j - 2]]
    return header, starts[:5], orders, at


# -- building (from numpy arrays, in memory) --------------------------------------------------


def unigram_hashes(uint64_t[::1] out):
    """The hash of each token as a unigram, into ``out`` (uint64 ``(V,)``)."""
    for w in range(out.shape[0]):
        out[w] = mix(SEED, w)


ctypedef fused key_t:
    uint32_t
    int64_t


def fill_order(key_t[::1] keys_out, double[::1] values_out, int width,
               const int64_t[::1] keys, const double[::1] logp, const double[::1] bow,
               const int64_t[::1] below_slot, const uint64_t[::1] below_hash, int64_t vocab_size,
               int64_t[::1] slot_of, uint64_t[::1] hash_of):
    """Insert one order's n-grams into its empty table (``keys_out`` all free: -1, or
    2**32 - 1 for 4-byte keys; ``values_out`` ``width`` float64 per slot).  ``keys``: the order's sorted table keys (row of the suffix
    below * V + first token); ``below_slot``/``below_hash``: slot and hash of each row of the
    order below.  Writes this order's slot and hash per row into ``slot_of``/``hash_of``, for
    the order above."""
    cdef int64_t slots = keys_out.shape[0], row, s, suffix, first, n = keys.shape[0]
    cdef key_t free = <key_t>NARROW_FREE if key_t is uint32_t else -1
    with nogil:
        for row in range(n):
            hash_of[row] = mix(below_hash[keys[row] // vocab_size], keys[row] % vocab_size)
        for row in range(n):
            # inserts land at random slots: fetch a later row's while this one probes
            if row + AHEAD < n:
                prefetch(&keys_out[home(hash_of[row + AHEAD], slots)])
            s = home(hash_of[row], slots)
            while keys_out[s] != free:
                s += 1
                if s == slots:
                    s = 0
            suffix, first = keys[row] // vocab_size, keys[row] % vocab_size
            keys_out[s] = <key_t>(below_slot[suffix] * vocab_size + first)
            values_out[s * width] = logp[row]
            if width == 2:
                values_out[s * width + 1] = bow[row]
            slot_of[row] = s


cdef inline uint64_t fnv(const uint8_t* data, int64_t start, int64_t stop) noexcept nogil:
    cdef uint64_t h = FNV_OFFSET
    cdef int64_t i
    for i in range(start, stop):
        h = (h ^ data[i]) * FNV_PRIME
    return h


def fill_words(int64_t[::1] table, const uint8_t[::1] blob, const int64_t[::1] offsets):
    """Insert every word id into the empty word table (all -1), keyed by its bytes'
    FNV-1a hash."""
    cdef int64_t mask = table.shape[0] - 1, w, s
    for w in range(offsets.shape[0] - 1):
        s = <int64_t>(fnv(&blob[0], offsets[w], offsets[w + 1]) & <uint64_t>mask)
        while table[s] >= 0:
            s = (s + 1) & mask
        table[s] = w


# -- reading an image -----------------------------------------------------------------------


cdef struct Order:
    const int64_t* keys  # 8-byte keys, or NULL
    const uint32_t* narrow  # 4-byte keys, or NULL
    const double* values
    int64_t slots
    int64_t width


cdef struct Walk:  # where a walk is: the n-grams found ending at its last position
    int64_t prev_slot[MAX_ORDER]
    double prev_bow[MAX_ORDER]
    int64_t cur_slot[MAX_ORDER]
    double cur_bow[MAX_ORDER]
    double total
    double carry


cdef inline int64_t find(const Order* t, uint64_t h, int64_t key) noexcept nogil:
    """Slot of ``key`` (probing from ``h``'s home slot), or -1; at most one pass over the table,
    so a damaged file cannot loop."""
    cdef int64_t s = home(h, t.slots), k, seen, free = -1
    if t.narrow != NULL:
        free = NARROW_FREE
    for seen in range(t.slots):
        k = t.narrow[s] if t.narrow != NULL else t.keys[s]
        if k == key:
            return s
        if k == free:
            return -1
        s += 1
        if s == t.slots:
            s = 0
    return -1


cdef inline int space(const uint8_t* data, int64_t i, int64_t n) noexcept nogil:
    """Bytes of the whitespace character starting at ``data[i]`` (``str.split``'s), or 0."""
    cdef uint8_t b = data[i], c, d
    if b == 32 or 9 <= b <= 13 or 28 <= b <= 31:
        return 1
    if b == 0xC2 and i + 1 < n and (data[i + 1] == 0x85 or data[i + 1] == 0xA0):
        return 2
    if i + 2 >= n:
        return 0
    c, d = data[i + 1], data[i + 2]
    if b == 0xE1 and c == 0x9A and d == 0x80:  # U+1680
        return 3
    if b == 0xE2 and c == 0x80 and (d <= 0x8A or d == 0xA8 or d == 0xA9 or d == 0xAF):
        return 3  # U+2000-U+200A, U+2028, U+2029, U+202F (0x80 <= d: a continuation byte)
    if b == 0xE2 and c == 0x81 and d == 0x9F:  # U+205F
        return 3
    if b == 0xE3 and c == 0x80 and d == 0x80:  # U+3000
        return 3
    return 0


class ImageError(ValueError):
    """A buffer or file that is not a whole, consistent n-gram image; the message says what."""


cdef int64_t field(const uint8_t* base, int64_t i) noexcept nogil:
    return (<const int64_t*>base)[i]


cdef class Image:
    """An n-gram image (module docstring) read in place from ``buffer`` (any object with the
    buffer protocol: a numpy array, a read-only ``mmap``), which it keeps alive.  The header is
    checked against the buffer's size and every word-table entry against the vocabulary, so a
    damaged or foreign file is refused with :class:`ImageError`; hash-table contents are not
    read until they are probed, and probing stops after one pass."""

    cdef readonly object buffer
    cdef const uint8_t[::1] mem  # held: the buffer cannot be closed or resized under pointers
    cdef readonly int order
    cdef readonly int64_t vocab_size, boundary, unk, flags, nbytes
    cdef readonly bytes vocab_sha256
    cdef readonly list slots
    cdef const uint8_t* blob
    cdef const int64_t* word_offsets
    cdef const int64_t* word_table
    cdef int64_t word_slots
    cdef const double* logp1
    cdef const double* bow1
    cdef Order orders[MAX_ORDER]

    def __init__(self, buffer):
        cdef const uint8_t[::1] mem = memoryview(buffer).cast("B")
        cdef const uint8_t* base
        self.buffer, self.mem, self.nbytes = buffer, mem, mem.shape[0]
        if self.nbytes < HEADER_FIXED:
            raise ImageError("not an lmladder n-gram image (shorter than a header)")
        base = &mem[0]
        if (<const char*>base)[:8] != MAGIC:
            raise ImageError("not an lmladder n-gram image (no header)")
        if <size_t>base % 8:
            raise ImageError("the buffer is not 8-byte aligned")
        if field(base, 1) != VERSION:
            raise ImageError(f"image version {field(base, 1)}; this lmladder reads version "
                             f"{VERSION}")
        self.order, self.vocab_size, self.flags = field(base, 2), field(base, 3), field(base, 4)
        self.boundary, self.unk = field(base, 5), field(base, 6)
        if not 1 <= self.order <= MAX_ORDER or self.vocab_size < 1:
            raise ImageError(f"order {self.order} and vocabulary {self.vocab_size}: out of range")
        if self.nbytes < HEADER_FIXED + 8 * PER_ORDER * (self.order - 1):
            raise ImageError("the header is cut short")
        blob_bytes, self.word_slots = field(base, 7), field(base, 8)
        self.slots = [field(base, FIXED + SHA // 8 + PER_ORDER * (j - 2) + 2)
                      for j in range(2, self.order + 1)]
        if (blob_bytes < 0 or self.word_slots < 2 or self.word_slots & (self.word_slots - 1)
                or any(not 0 < s < (1 << 32) for s in self.slots)):
            raise ImageError("section sizes out of range")
        header, starts, sections, total = layout(self.order, self.vocab_size, blob_bytes,
                                                 self.word_slots, self.slots)
        stored = [field(base, 9 + i) for i in range(5)] + [
            field(base, FIXED + SHA // 8 + i) for i in range(PER_ORDER * (self.order - 1))]
        if stored != starts + sections or total != self.nbytes:
            raise ImageError(f"the sections do not match the header ({self.nbytes:,} bytes, "
                             f"the header describes {total:,}): cut short or damaged")
        self.vocab_sha256 = (<const char*>base)[FIXED * 8: FIXED * 8 + SHA].rstrip(b"\0")
        cdef int64_t[5] at = starts
        self.blob = base + at[0]
        self.word_offsets = <const int64_t*>(base + at[1])
        self.word_table = <const int64_t*>(base + at[2])
        self.logp1 = <const double*>(base + at[3])
        self.bow1 = <const double*>(base + at[4])
        cdef int64_t keys_at, values_at
        cdef Order* o
        for j in range(2, self.order + 1):
            first = PER_ORDER * (j - 2)
            keys_at, values_at = sections[first], sections[first + 1]
            slots, width, key = sections[first + 2], sections[first + 3], sections[first + 4]
            o = &self.orders[j - 2]
            o.keys = <const int64_t*>(base + keys_at) if key == 8 else NULL
            o.narrow = <const uint32_t*>(base + keys_at) if key == 4 else NULL
            o.values = <const double*>(base + values_at)
            o.slots, o.width = slots, width
        self._check_words(blob_bytes)

    cdef _check_words(self, int64_t blob_bytes):
        cdef int64_t v = self.vocab_size, i
        if not (-1 <= self.boundary < v and -1 <= self.unk < v):
            raise ImageError("boundary or unknown id outside the vocabulary")
        if self.word_offsets[0] != 0 or self.word_offsets[v] > blob_bytes:
            raise ImageError("word offsets outside the word bytes")
        for i in range(v):
            if self.word_offsets[i + 1] < self.word_offsets[i]:
                raise ImageError("word offsets out of order")
        for i in range(self.word_slots):
            if not -1 <= self.word_table[i] < v:
                raise ImageError("the word table names an id outside the vocabulary")

    @property
    def flat(self):
        return bool(self.flags & FLAT_BIT)

    @property
    def cross_boundary(self):
        return bool(self.flags & CROSS_BIT)

    # -- scoring --------------------------------------------------------------------------------

    def score(self, const int64_t[::1] seq, const int64_t[::1] hist, double[::1] out):
        """ln p(seq[t] | history) for ``t = 1..N`` into ``out`` (float64 ``(N,)``).

        ``seq``: int64 ``(N + 1,)``, the initial boundary first; ``hist``: int64 ``(N,)`` tokens
        of history usable at each position, at most ``order - 1`` and growing by at most one
        per position (a history is cut, never extended backwards, which is what lets position
        ``t`` reuse what was found at ``t - 1``).  See
        :class:`~lmladder.baselines.ngram_backoff.BackoffTables` for the query.
        """
        cdef Walk walk
        if seq.shape[0] != hist.shape[0] + 1 or out.shape[0] != hist.shape[0]:
            raise ValueError("score needs len(seq) == len(hist) + 1 == len(out) + 1")
        if hist.shape[0] == 0:
            return
        self.start(&walk, seq[0])
        with nogil:
            self.walk(&walk, &seq[0], &hist[0], hist.shape[0], &out[0])

    cdef void start(self, Walk* w, int64_t first) noexcept nogil:
        cdef int j
        for j in range(MAX_ORDER):
            w.prev_slot[j], w.prev_bow[j], w.cur_slot[j], w.cur_bow[j] = -1, 0.0, -1, 0.0
        w.prev_slot[0], w.prev_bow[0] = first, self.bow1[first]
        w.total, w.carry = 0.0, 0.0

    cdef void walk(self, Walk* w, const int64_t* seq, const int64_t* hist, int64_t npos,
                   double* out) noexcept nogil:
        """Positions ``1..npos`` of ``seq`` (``seq[0]`` was the walk's last token); each ln p
        into ``out`` if given, and all of them into ``w.total`` (Neumaier's compensated sum)."""
        cdef int n = self.order, j, lvl, longest, m
        cdef int64_t v = self.vocab_size, t, s, first, ahead
        cdef uint64_t h
        cdef double lp, total = w.total, carry = w.carry, x
        cdef double log_v = self.log_v()
        cdef const Order* tab
        cdef int64_t* prev_slot = w.prev_slot
        cdef double* prev_bow = w.prev_bow
        cdef int64_t* cur_slot = w.cur_slot
        cdef double* cur_bow = w.cur_bow
        cdef bint flat = self.flags & FLAT_BIT
        for t in range(1, npos + 1):
            ahead = t + AHEAD
            if ahead <= npos:
                h = mix(SEED, seq[ahead])
                for j in range(2, min(n, hist[ahead - 1] + 1) + 1):
                    h = mix(h, seq[ahead - j + 1])
                    tab = &self.orders[j - 2]
                    s = home(h, tab.slots)
                    if tab.narrow != NULL:
                        prefetch(&tab.narrow[s])
                    else:
                        prefetch(&tab.keys[s])
                    prefetch(&tab.values[s * tab.width])
            m = hist[t - 1]
            s = seq[t]
            h = mix(SEED, s)
            lp = self.logp1[s]
            cur_slot[0], cur_bow[0] = s, self.bow1[s]
            longest = 1
            for j in range(2, min(n, m + 1) + 1):
                first = seq[t - j + 1]
                h = mix(h, first)
                tab = &self.orders[j - 2]
                s = find(tab, h, s * v + first)
                if s < 0:
                    break
                lp = tab.values[s * tab.width]
                cur_slot[j - 1] = s
                cur_bow[j - 1] = tab.values[s * tab.width + 1] if tab.width == 2 else 0.0
                longest = j
            for j in range(longest, n):
                cur_slot[j] = -1
            if flat:
                if longest == m + 1:
                    pass
                elif m >= 1 and prev_slot[m - 1] >= 0:
                    lp = prev_bow[m - 1] - log_v
                else:
                    lp = -log_v
            else:
                # shortest context first: the order BackoffTables.distributions adds them in,
                # so step() and token_logprobs round alike
                for lvl in range(longest, min(m, n - 1) + 1):
                    if prev_slot[lvl - 1] < 0:
                        break
                    lp += prev_bow[lvl - 1]
            if out != NULL:
                out[t - 1] = lp
            x = total + lp
            if (total if total >= 0 else -total) >= (lp if lp >= 0 else -lp):
                carry += (total - x) + lp
            else:
                carry += (lp - x) + total
            total = x
            prev_slot, cur_slot = cur_slot, prev_slot
            prev_bow, cur_bow = cur_bow, prev_bow
        # the walk's buffers hold the last position's n-grams in prev_*, wherever they landed
        for j in range(n):
            w.prev_slot[j], w.prev_bow[j] = prev_slot[j], prev_bow[j]
        w.total, w.carry = total, carry

    cdef double log_v(self) noexcept nogil:
        return log(<double>self.vocab_size)

    # -- reading words ------------------------------------------------------------------------

    cdef inline int64_t word_id(self, const uint8_t* data, int64_t start, int64_t stop,
                                uint64_t h, int64_t missing) noexcept nogil:
        """The id of the word ``data[start:stop]`` (hashed to ``h``), or ``missing``."""
        cdef int64_t mask = self.word_slots - 1, s = <int64_t>(h & <uint64_t>mask), w, lo
        cdef int64_t length = stop - start
        while self.word_table[s] >= 0:
            w = self.word_table[s]
            lo = self.word_offsets[w]
            if (self.word_offsets[w + 1] - lo == length
                    and memcmp(self.blob + lo, data + start, length) == 0):
                return w
            s = (s + 1) & mask
        return missing

    cdef int64_t encode(self, const uint8_t* data, int64_t n, bint last, int64_t* out,
                        int64_t* misses, int64_t* first_miss) noexcept nogil:
        """The ids of ``data``'s words and line ends into ``out`` (room for ``n + 1``); returns
        how many.  A word the vocabulary lacks is its unknown word, or ``UNKNOWN``: counted in
        ``misses``, the byte offset of the first in ``first_miss`` (if still -1).  ``last``: the
        text ends here, so a last line without ``\\n`` gets its boundary."""
        cdef int64_t i = 0, count = 0, start, width
        cdef int64_t missing = self.unk if self.unk >= 0 else NO_ID
        cdef uint64_t h
        cdef uint8_t b
        while i < n:
            if data[i] == 10:  # '\n'
                out[count] = self.boundary
                count += 1
                i += 1
                continue
            width = space(data, i, n)
            if width:
                i += width
                continue
            start = i
            h = FNV_OFFSET
            while i < n:
                b = data[i]
                if not 32 < b < 128 and (b == 10 or space(data, i, n)):  # printable ASCII: a word
                    break
                h = (h ^ b) * FNV_PRIME
                i += 1
            out[count] = self.word_id(data, start, i, h, -2)
            if out[count] == -2:
                out[count] = missing
                misses[0] += 1
                if first_miss[0] < 0:
                    first_miss[0] = start
            count += 1
        if last and n and data[n - 1] != 10:
            out[count] = self.boundary
            count += 1
        return count

    def ids(self, const uint8_t[::1] data, int64_t[::1] out):
        """The ids of the words of the UTF-8 ``data`` and a boundary after every line into
        ``out`` (room for ``len(data) + 1``); returns ``(count, misses, first_miss)``: how many
        ids, how many words the vocabulary lacks (the unknown word, or ``UNKNOWN`` without one)
        and the byte offset of the first (-1: none)."""
        cdef int64_t misses = 0, first = -1, count
        if out.shape[0] < data.shape[0] + 1:
            raise ValueError("out needs room for len(data) + 1 ids")
        if self.boundary < 0:
            raise ValueError("this image holds no vocabulary to read words with")
        if data.shape[0] == 0:
            return 0, 0, -1
        with nogil:
            count = self.encode(&data[0], data.shape[0], True, &out[0], &misses, &first)
        return count, misses, first


cdef class TextScorer:
    """Scores a text fed in blocks that end at line ends, with the history the model's boundary
    rule gives (``cross_boundary``: histories run across lines and so across blocks), as
    ``lmladder score`` does: ``tokens``, ``misses`` (words the vocabulary lacks), ``total`` (sum
    of ln p, compensated)."""

    cdef Image image
    cdef Walk walk
    cdef int64_t* ids  # the last ``keep`` tokens scored, then the block's
    cdef int64_t* hist
    cdef int64_t room, run, cap, keep
    cdef bint truncate
    cdef readonly int64_t tokens, misses, first_miss
    cdef readonly bint closed  # the vocabulary has no unknown word: a miss ends the scoring

    def __init__(self, Image image, int64_t block):
        if image.boundary < 0:
            raise ValueError("this image holds no vocabulary to read words with")
        self.image = image
        self.cap = image.order - 1
        self.keep = max(1, self.cap)  # the walk reads up to order - 1 tokens back
        self.room = block + 2
        self.ids = <int64_t*>malloc((self.room + self.keep) * sizeof(int64_t))
        self.hist = <int64_t*>malloc(self.room * sizeof(int64_t))
        if self.ids == NULL or self.hist == NULL:
            raise MemoryError()
        self.truncate = not image.cross_boundary
        self.closed = image.unk < 0
        self.tokens = self.misses = 0
        self.first_miss = -1
        self.run = 1  # the initial boundary
        image.start(&self.walk, image.boundary)
        for t in range(self.keep):
            self.ids[t] = image.boundary

    cdef _grow(self, int64_t room):
        cdef int64_t* ids = <int64_t*>realloc(self.ids, (room + self.keep) * sizeof(int64_t))
        if ids == NULL:
            raise MemoryError()
        self.ids = ids
        cdef int64_t* hist = <int64_t*>realloc(self.hist, room * sizeof(int64_t))
        if hist == NULL:
            raise MemoryError()
        self.hist, self.room = hist, room

    def __dealloc__(self):
        free(self.ids)
        free(self.hist)

    @property
    def total(self):
        return self.walk.total + self.walk.carry

    def feed(self, const uint8_t[::1] data, bint last):
        """Score the words of ``data`` (whole lines, or the text's end when ``last``).  A word
        the vocabulary lacks: see ``first_miss`` (the byte offset in this block of the first, -1
        if none) -- with no unknown word, nothing of the block is scored after it."""
        cdef int64_t n = data.shape[0], count, t, misses = 0, first = -1, keep = self.keep
        self.first_miss = -1
        if n == 0:
            return
        if n + 2 > self.room:  # a line longer than a block
            self._grow(n + 2)
        cdef int64_t* ids = self.ids
        with nogil:
            count = self.image.encode(&data[0], n, last, ids + keep, &misses, &first)
            for t in range(count):
                if ids[keep + t] == NO_ID:
                    count = t
                    break
                self.hist[t] = self.run if self.run < self.cap else self.cap
                if self.truncate and ids[keep + t] == self.image.boundary:
                    self.run = 1
                else:
                    self.run += 1
            # the walk's seq[0] is the last token scored, the keep - 1 before it its history
            self.image.walk(&self.walk, ids + keep - 1, self.hist, count, NULL)
            memmove(ids, ids + count, keep * sizeof(int64_t))
        self.tokens += count
        self.misses += misses
        self.first_miss = first
