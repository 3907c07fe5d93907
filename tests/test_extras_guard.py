"""The suite's guard for optional extras (tests/conftest.py): a module that needs a missing extra
is skipped, and under CI (``$CI`` set) fails, without stopping the collection of the others."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

NEEDS_MISSING = """
from tests.conftest import require_extra

gone = require_extra("lmladder_no_such_module", "no-such-extra")
from lmladder_no_such_module import anything  # noqa: E402


def test_never_runs():
    raise AssertionError("ran without its extra")
"""


@pytest.fixture
def suite(pytester):
    pytester.makeconftest("from tests.conftest import pytest_pycollect_makemodule  # noqa: F401\n")
    pytester.makepyfile(test_needs=NEEDS_MISSING, test_other="def test_ok():\n    pass\n")
    return pytester


def test_a_missing_extra_skips_its_module(suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*lmladder_no_such_module is not installed*no-such-extra*"])


def test_under_ci_a_missing_extra_fails_its_module_and_the_rest_runs(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_needs.py::<module> - *lmladder_no_such_module is "
                                 "not installed*CI is set*"])
