"""Decoder-only Transformer (neural/transformer.py): parameter formula, causal mask, KV cache,
sliding-window scoring."""

import numpy as np
import pytest
import torch

from lmladder.api import Budget, ConfigError, ContextPolicy, LanguageModel
from lmladder.neural.transformer import (
    GPT,
    TransformerConfig,
    TransformerLM,
    transformer_parameter_count,
)
from lmladder.registry import build


def tiny(positions="learned", **kw):
    return TransformerLM(layers=2, heads=2, width=16, context=8, batch_size=4, lr=3e-3,
                         warmup_steps=0, positions=positions, **kw)


@pytest.fixture(scope="module", params=["learned", "rotary"])
def model(request, data):
    m = tiny(request.param)
    m.fit(data.train.ids, data.vocab, budget=Budget(steps=25))
    return m


@pytest.mark.parametrize("shape", [dict(), dict(bias=True), dict(tied=False, positions="rotary"),
                                   dict(mlp_ratio=2, bias=True, tied=False)])
def test_parameter_count_matches_formula(shape):
    cfg = TransformerConfig(layers=3, heads=2, width=12, context=10, **shape)
    net = GPT(37, cfg)
    assert sum(p.numel() for p in net.parameters()) == transformer_parameter_count(cfg, 37)


def test_nanogpt_cpu_size():
    cfg = build("transformer-char-small").cfg
    assert (cfg.layers, cfg.heads, cfg.width, cfg.context) == (4, 4, 128, 64)
    assert transformer_parameter_count(cfg, 65) == 804_096  # Tiny Shakespeare, 65 characters


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_causal_mask(positions):
    torch.manual_seed(0)
    net = GPT(20, TransformerConfig(layers=2, heads=2, width=16, context=8,
                                    positions=positions)).eval()
    x = torch.randint(0, 20, (1, 8))
    y = x.clone()
    y[0, 5:] = (y[0, 5:] + 3) % 20
    with torch.no_grad():
        a, b = net(x)[0], net(y)[0]
    torch.testing.assert_close(a[0, :5], b[0, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def test_kv_cache_matches_full_pass(model):
    net = model.module_
    x = torch.randint(0, 40, (3, 8))
    with torch.no_grad():
        full = net.run(x)[0]
        logits, cache = net.run(x[:, :3])
        steps = [logits]
        for t in range(3, 8):
            logits, cache = net.run(x[:, t : t + 1], cache)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 12, 13, 30, 37])
def test_step_equals_sliding_windows(model, data, n):
    ids = data.test.ids[:n]
    fast = model.token_logprobs(ids)
    ref = LanguageModel.token_logprobs(model, ids)
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=0)


def test_window_semantics_known_histories(model, data):
    """Window 4, stride 2 over 9 tokens: each score equals a fresh pass over its documented
    history (module docstring: histories of 3-4 tokens after the first window)."""
    ids = data.test.ids[:9]
    inputs = np.concatenate([[data.vocab.boundary_id], ids[:-1]])
    got = model.token_logprobs(ids, context=ContextPolicy(window=4, stride=2))
    # position p is scored by the window starting at 0 (p < 4) or at 2k with 4 + 2(k-1) <= p
    starts = [0, 0, 0, 0, 2, 2, 4, 4, 6]
    for p, s in enumerate(starts):
        x = torch.as_tensor(inputs[s : p + 1])[None]
        with torch.no_grad():
            lp = torch.log_softmax(model.module_(x)[0][0, -1].double(), -1)
        assert got[p] == pytest.approx(float(lp[ids[p]]), abs=1e-5)


def test_window_larger_than_context_is_an_error(model, data):
    with pytest.raises(ConfigError, match="exceeds the model's context"):
        model.token_logprobs(data.test.ids[:20], context=ContextPolicy(window=9))


def test_flops_estimate(model, data):
    v = len(data.vocab)
    assert model.forward_flops_per_token() == 2 * (2 * 12 * 16 * 16 + v * 16) + 2 * 2 * 8 * 16
