from dataclasses import dataclass

import numpy as np
import pytest

from lmladder.api import Budget, ConfigError, Vocab, build_config, log_softmax, sample_next


@dataclass(frozen=True)
class Cfg:
    order: int = 3
    rate: float = 0.1
    name: str = "x"
    sizes: tuple[int, ...] = (1, 2)
    maybe: int | None = None


def test_build_config_converts_and_checks():
    c = build_config(Cfg, {"order": 5, "rate": 1, "sizes": [3, 4]})
    assert c == Cfg(order=5, rate=1.0, sizes=(3, 4))
    assert isinstance(c.rate, float)


def test_unknown_key_names_where_and_valid_keys():
    with pytest.raises(ConfigError) as err:
        build_config(Cfg, {"ordr": 5}, where="quick.toml: models[0].config")
    msg = str(err.value)
    assert "quick.toml: models[0].config" in msg and "'ordr'" in msg and "order" in msg


@pytest.mark.parametrize("values", [{"order": "5"}, {"order": 2.5}, {"order": True},
                                    {"sizes": [1, "a"]}, {"maybe": "no"}])
def test_wrong_types_are_errors(values):
    with pytest.raises(ConfigError, match="must be"):
        build_config(Cfg, values)


def test_vocab_round_trip_and_hash():
    v = Vocab(["<eos>", "a", "b", "<unk>"], boundary="<eos>", unk="<unk>")
    assert list(v.encode(["a", "zzz", "<eos>"])) == [1, 3, 0]
    assert Vocab.from_dict(v.to_dict()) == v
    other = Vocab(["<eos>", "b", "a", "<unk>"], boundary="<eos>", unk="<unk>")
    assert other.sha256 != v.sha256
    assert v.detokenize([1, 2, 0, 2]) == "a b\nb"
    chars = Vocab(["\n", "h", "i"], boundary="\n", separator="")
    assert chars.detokenize(chars.encode(list("hi\nih"))) == "hi\nih"
    with pytest.raises(KeyError):
        chars.encode(["x"])


def test_budget():
    b = Budget(tokens=100, seconds=10)
    assert not b.exhausted(tokens=99, seconds=1)
    assert b.exhausted(tokens=100)
    assert b.fraction(tokens=50, seconds=8) == pytest.approx(0.8)
    assert Budget().fraction(tokens=5) is None


def test_sample_next_respects_top_k_and_seed():
    logp = log_softmax(np.array([0.0, 1.0, 2.0, 3.0]))
    draws = {sample_next(logp, np.random.default_rng(s), top_k=2) for s in range(50)}
    assert draws == {2, 3}
    a = [sample_next(logp, np.random.default_rng(7)) for _ in range(3)]
    b = [sample_next(logp, np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    np.testing.assert_allclose(np.exp(logp).sum(), 1.0)


def test_harness_and_count_models_import_without_torch():
    """The registry is lazy: listing, the n-gram family and hmmlearn need no torch."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import lmladder.baselines.ngram, lmladder.baselines.hmm_hmmlearn\n"
            "import lmladder.cli, lmladder.reports.render\n"
            "from lmladder.cli import main; main(['list', 'models'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "kn5" in done.stdout
