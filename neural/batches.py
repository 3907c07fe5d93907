"""Training batches: how a 1-D stream of token ids becomes ``(B, T)`` inputs and targets.

The training loop (:mod:`lmladder.neural.loop`) asks a :class:`Batches` for one batch per
optimizer step; a model's ``batching`` picks one of two ways to cut the stream.

``batching = "stream"`` (recurrent models: truncated back-propagation through time).  The 1-D
stream of training ids is cut into ``B = batch_size`` rows of equal length, each a contiguous
piece of the text; the tail that does not fill a row is dropped.  With 26 ids and ``B = 4``
there are ``26 // 4 = 6`` columns::

    stream   0  1  2  3  4  5  6  7  ...  22 23 | 24 25  <- dropped
             '---- row 0 ---'  '-- row 1 ...

    data     row 0:   0  1  2  3  4  5      (B, cols) = (4, 6): along a row the text runs on;
             row 1:   6  7  8  9 10 11      down a column are B positions far apart in it,
             row 2:  12 13 14 15 16 17      which one step trains on side by side
             row 3:  18 19 20 21 22 23

A step takes the next ``T = seq_len`` columns as inputs ``x`` and the same columns one to the
right as targets ``y``: ``y[b, t]`` is the token after ``x[b, t]``.  With ``T = 2``::

    step           1           2           3 (the columns left)
    x  (B, T)    0  1        2  3        4
                 6  7        8  9       10
                12 13       14 15       16
                18 19       20 21       22
    y  (B, T)    1  2        3  4        5
                 7  8        9 10       11
                13 14       15 16       17
                19 20       21 22       23
    carry in   None     ->  h1     ->  h2         h_k: the state after step k, per row

The first column is never a target and the last never an input; when the inputs have reached the
last column but one the epoch ends and the next step starts again at column 0.  The carry (an
RNN's hidden state, one per row) passes from a window to the next on the same row, so row 0
reads ``2 3`` with the state it had after ``0 1``: the network sees an unbroken history.  It is
detached between steps, so gradients reach back at most ``T`` tokens (the truncation), and it
starts from ``None`` at every epoch.  A data-parallel replica trains on a contiguous block of
rows and keeps their carry.

``batching = "windows"`` (Transformers).  Each row is an independent window of ``T + 1``
consecutive ids, ``x = window[:-1]``, ``y = window[1:]``, starting at random positions
(``sampling = "random"``) or at ``p, p + T, p + 2T, ...`` wrapping around the stream
(``"sequential"``); the carry is always ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


class Batches:
    """Training batches ``(x, y, fresh)``: int64 ``(B, T)`` inputs and targets; ``fresh`` means the
    carry must be reset (a new epoch of a stream, or independent windows).  ``mode`` is the
    model's ``batching``; see the module docs for how each cuts ``data``, int64 ``(N,)``."""

    def __init__(self, mode: str, data: torch.Tensor, batch: int, seq_len: int, sampling: str,
                 seed: int):
        self.mode, self.seq_len, self.sampling = mode, seq_len, sampling
        self.pos, self.epoch = 0, 0
        self.gen = torch.Generator().manual_seed(seed)
        if mode == "stream":
            cols = len(data) // batch
            if cols < 2:
                raise ValueError(f"training stream of {len(data)} tokens is too short for "
                                 f"batch_size {batch}")
            # Row b holds tokens [b*cols, (b+1)*cols): each row is a contiguous piece of text.
            self.data = data[: cols * batch].view(batch, cols)
        else:
            if len(data) < 2:
                raise ValueError("training stream needs at least 2 tokens")
            self.seq_len = min(seq_len, len(data) - 1)
            self.data = data
            self.batch = batch

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        if self.mode == "stream":
            fresh = self.pos == 0
            t = min(self.seq_len, self.data.shape[1] - 1 - self.pos)
            x = self.data[:, self.pos : self.pos + t]
            y = self.data[:, self.pos + 1 : self.pos + 1 + t]
            self.pos += t
            if self.pos >= self.data.shape[1] - 1:
                self.pos, self.epoch = 0, self.epoch + 1
            return x, y, fresh
        n, t = len(self.data), self.seq_len
        if self.sampling == "random":
            starts = torch.randint(0, n - t, (self.batch,), generator=self.gen)
        else:
            span = n - t  # windows start at pos, pos + t, ... wrapping around the stream
            starts = (self.pos + torch.arange(self.batch) * t) % span
            self.pos = (self.pos + self.batch * t) % span
        idx = starts[:, None] + torch.arange(t + 1)[None, :]
        win = self.data[idx.to(self.data.device)]
        return win[:, :-1], win[:, 1:], True

    def state(self) -> dict[str, np.ndarray]:
        return {"pos": np.array(self.pos), "epoch": np.array(self.epoch),
                "gen": self.gen.get_state().numpy()}

    def set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.pos, self.epoch = int(arrays["pos"]), int(arrays["epoch"])
        self.gen.set_state(torch.from_numpy(np.array(arrays["gen"], dtype=np.uint8)))
