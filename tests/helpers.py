"""Builders the tests share.

``write_matrix`` renders a matrix file from Python values, so a test states the matrix it needs
as data instead of pasting TOML text; tests about malformed or invalid TOML text (test_bad_inputs,
test_runner's error cases) keep their text inline, since the text is what they test.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(value) -> str:
    """``value`` (bool, int, float, str, list or dict, nested) as a TOML value; dicts become
    inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, repr(value))
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")  # JSON's escapes are TOML's
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML value for {value!r}")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _table(values: Mapping) -> list[str]:
    return [f"{_key(k)} = {toml_value(v)}" for k, v in values.items()]


def matrix_text(models: Sequence[str | Mapping], *, scoring: Mapping | None = None,
                **matrix) -> str:
    """The text of a matrix file: ``[matrix]`` with the keyword arguments as its keys, then
    ``[scoring]`` when given, then one ``[[models]]`` table per entry of ``models`` (a model's
    name alone, or a dict of its keys: ``name``, ``label``, ``budget``, ``config``, ...)."""
    lines = ["[matrix]", *_table(matrix)]
    if scoring is not None:
        lines += ["", "[scoring]", *_table(scoring)]
    for model in models:
        lines += ["", "[[models]]", *_table({"name": model} if isinstance(model, str) else model)]
    return "\n".join(lines) + "\n"


def write_matrix(path: Path, models: Sequence[str | Mapping], *, scoring: Mapping | None = None,
                 **matrix) -> Path:
    """Write :func:`matrix_text` to ``path`` (its folder made if needed) and return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(matrix_text(models, scoring=scoring, **matrix))
    return path


@contextlib.contextmanager
def system_chromium() -> Iterator:
    """A headless system Chromium driven by Playwright, closed on leaving; the calling test (or
    fixture) is unavailable -- skipped, failed under CI -- without Playwright or Chromium.
    Playwright adds --no-sandbox by default (chromium_sandbox=False), which root in a CI
    container needs; headless so that no display is required."""
    from tests.conftest import unavailable

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright not installed: pip install -e '.[test]'")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        unavailable("no chromium: apt-get install chromium")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()
