"""Every registry entry keeps the contract (see tests/contract.py for the checks)."""

import pytest

from lmladder import registry
from tests import contract

NAMES = sorted(n for n in registry.models() if not n.endswith(":"))  # built-ins and plugins



@pytest.fixture(scope="module")
def models(data):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = contract.fitted(registry.build(name, smoke=True), data)
        return cache[name]

    return get


@pytest.mark.parametrize("check", contract.ALL_CHECKS, ids=lambda c: c.__name__[6:])
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, check, models, data):
    check(models(name), data)


@pytest.mark.parametrize("name", NAMES)
def test_save_load(name, models, data, tmp_path):
    contract.check_save_load(models(name), data, tmp_path)
