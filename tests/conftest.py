"""Shared fixtures.  Tests read corpora from ../shared/data (or $LMLADDER_DATA) when present."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# The tests' torch models are tiny: one thread is faster than two, and does not spin against other
# processes on a shared 2-core machine (a contract run went from minutes to seconds).
try:
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass


def in_ci() -> bool:
    """True under CI (``$CI`` set), where every optional extra is installed and must be tested."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_extra(module: str, extra: str):
    """Import ``module`` of the optional extra ``extra``, or skip the test -- but under CI, where
    ``.ci/run`` installs the extras, fail instead, so a missing install cannot pass unseen."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        why = f"{module} is not installed ({err}): pip install -e '.[{extra}]'"
        if in_ci():
            pytest.fail(f"{why} (CI is set: this test must run here)", pytrace=False)
        pytest.skip(why)


def shared_data_dir() -> Path | None:
    env = os.environ.get("LMLADDER_DATA")
    for candidate in (Path(env) if env else None, SHARED_DATA):
        if candidate is not None and (candidate / "ptb" / "ptb.train.txt").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("real corpora not found: set LMLADDER_DATA or place ../shared/data beside "
                    "the checkout")
    return found


@pytest.fixture(scope="session")
def data():
    """The small synthetic corpus every model family is smoke-tested on (see tests/contract.py)."""
    from tests import contract

    return contract.tiny_dataset()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or environment's data folder unless a test asks for it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("LMLADDER_DATA", raising=False)
