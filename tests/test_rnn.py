"""RNN/GRU/LSTM family (neural/rnn.py): parameter formula, tying, stateful scoring."""

import numpy as np
import pytest

from lmladder.api import Budget, ConfigError, ContextPolicy
from lmladder.neural.rnn import RNNLM, RNNConfig, RNNNet, rnn_parameter_count
from lmladder.registry import build


@pytest.fixture(scope="module")
def lstm(data):
    m = RNNLM(hidden=16, layers=2, bptt=8, batch_size=4, optimizer="adamw", lr=1e-2)
    m.fit(data.train.ids, data.vocab, budget=Budget(steps=20))
    return m


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "gru", "lstm"])
@pytest.mark.parametrize("shape", [dict(layers=1), dict(layers=3, emb_size=7),
                                   dict(layers=2, tied=True)])
def test_parameter_count_matches_formula(cell, shape):
    cfg = RNNConfig(cell=cell, hidden=12, **shape)
    net = RNNNet(50, cfg)
    assert sum(p.numel() for p in net.parameters()) == rnn_parameter_count(cfg, 50)


def test_zaremba_configs_known_sizes():
    # Zaremba et al. 2014 on PTB (V = 10,000): small 2x200 and medium 2x650 LSTMs, untied.
    assert rnn_parameter_count(RNNConfig(hidden=200, layers=2), 10_000) == 4_653_200
    medium = build("lstm-medium").cfg
    assert (medium.hidden, medium.dropout, medium.tied) == (650, 0.5, False)
    assert rnn_parameter_count(medium, 10_000) == 10_000 * 650 * 2 + 10_000 + 2 * 4 * 650 * 1302
    large = build("lstm-large").cfg
    assert (large.hidden, large.dropout, large.layers) == (1500, 0.65, 2)


def test_tied_weights_share_storage():
    net = RNNNet(30, RNNConfig(hidden=8, tied=True))
    assert net.decoder.weight is net.embed.weight
    with pytest.raises(ConfigError, match="emb_size == hidden"):
        RNNLM(hidden=8, emb_size=4, tied=True)


def test_scoring_is_stateful_and_chunk_independent(lstm, data):
    ids = data.test.ids[:300]
    base = lstm.token_logprobs(ids)
    lstm_small_chunks = RNNLM(**dict(lstm.config(), score_chunk=7))
    lstm_small_chunks.vocab_, lstm_small_chunks.module_ = lstm.vocab_, lstm.module_
    np.testing.assert_allclose(lstm_small_chunks.token_logprobs(ids), base, atol=1e-6, rtol=0)
    # The hidden state carries the history: changing the first token moves the 20th score.
    changed = ids.copy()
    changed[0] = (changed[0] + 1) % len(data.vocab)
    assert abs(lstm.token_logprobs(changed)[20] - base[20]) > 1e-7


def test_reset_at_boundary_scores_lines_alone(lstm, data):
    ids = data.test.ids[:200]
    reset = ContextPolicy(reset_at_boundary=True)
    cut = int(np.flatnonzero(ids == data.vocab.boundary_id)[2]) + 1  # start of the fourth line
    whole = lstm.token_logprobs(ids, context=reset)
    np.testing.assert_allclose(whole[cut:], lstm.token_logprobs(ids[cut:], context=reset),
                               atol=1e-6, rtol=0)
    carried = lstm.token_logprobs(ids)
    assert not np.allclose(carried[cut:], whole[cut:], atol=1e-6)


def test_flops_estimate(lstm, data):
    v = len(data.vocab)
    assert lstm.forward_flops_per_token() == 2 * (4 * 16 * 32 * 2 + 16 * v)
