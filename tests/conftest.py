"""Shared fixtures.  Tests read corpora from ../shared/data (or $LMLADDER_DATA) when present."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import NoReturn

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


class Unavailable(pytest.fail.Exception):
    """A test's extra or browser is missing under CI: a failure, as ``pytest.fail`` raises."""


def unavailable(why: str) -> NoReturn:
    """Skip the test -- or, called at module level, the whole module -- because ``why``; but under
    CI, where ``.ci/run`` installs every extra and the browser, fail instead, so that a missing
    install cannot pass unseen.  At module level under CI the module's tests are one failing test
    (see :class:`_TestModule`), and the rest of the suite still runs."""
    if in_ci():
        raise Unavailable(f"{why} (CI is set: this test must run here)", pytrace=False)
    pytest.skip(why, allow_module_level=True)


class _UnavailableItem(pytest.Item):
    """Stands for the tests of a module that called :func:`unavailable` at import under CI."""

    def __init__(self, *, why: str, **kwargs):
        super().__init__(**kwargs)
        self.why = why

    def runtest(self):
        raise Unavailable(self.why, pytrace=False)

    def reportinfo(self):
        return self.path, None, self.name


class _TestModule(pytest.Module):
    """A test module whose :func:`unavailable` at import fails one test instead of stopping the
    collection of the whole suite (pytest stops at any collection error)."""

    def collect(self):
        try:
            return super().collect()
        except Unavailable as err:
            return [_UnavailableItem.from_parent(self, name="<module>", why=str(err.msg))]


def pytest_pycollect_makemodule(module_path, parent):
    return _TestModule.from_parent(parent, path=module_path)


def require_extra(module: str, extra: str):
    """Import and return ``module`` of the optional extra ``extra``, or call :func:`unavailable`
    (skip; fail under CI).  Safe at module level, before the module's other imports of it::

        lm_eval = require_extra("lm_eval", "lm-eval")
        from lm_eval.tasks import TaskManager  # noqa: E402
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:  # also a broken install, not only ModuleNotFoundError
        unavailable(f"{module} is not installed ({err}): pip install -e '.[{extra}]'")


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
