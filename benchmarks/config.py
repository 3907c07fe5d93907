"""Typed model configuration: a TOML table in, a frozen dataclass out, and back to JSON.

Every model's hyperparameters are a frozen dataclass (its ``Config``).  :func:`build_config`
builds one from a mapping (a TOML table, keyword arguments, a saved ``model.json``), checking keys,
types and numbers, and :func:`config_dict` gives the hyperparameters back verbatim for records
and checkpoints::

    config = { layers = 2, dropout = 0, betas = [0.9, 0.95] }         a TOML table
        | build_config(Config, table, where="quick.toml: models[9].config")
        v
    Config(layers=2, dropout=0.0, betas=(0.9, 0.95), ...)            lists become tuples, an
        | config_dict(cfg)                                           int for a float field a
        v                                                            float; defaults filled in
    {"layers": 2, "dropout": 0.0, "betas": [0.9, 0.95], ...}         tuples as lists again

Errors are :class:`ConfigError`, one line naming where the values came from and the key.
:func:`require` is the helper configs' own ``__post_init__`` range checks use.
This module imports nothing of lmladder.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """A configuration names an unknown key or gives a value of the wrong type."""


INT64_MAX = 2**63 - 1


def _check_type(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return all(_check_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _check_type(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _number_problem(value: Any) -> str | None:
    """Why ``value`` (or a number inside it) cannot be a config number, or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) > INT64_MAX:
        return f"must fit in 64 bits (|value| <= 2**63 - 1), got {value}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if isinstance(value, (list, tuple)):
        for v in value:
            problem = _number_problem(v)
            if problem:
                return problem
    return None


def require(config: Any, key: str, ok: bool, need: str) -> None:
    """For configs' ``__post_init__``: ValueError ``"<key> must be <need>, got <value>"`` unless
    ``ok`` (``build_config`` adds where the config came from)."""
    if not ok:
        raise ValueError(f"{key} must be {need}, got {getattr(config, key)!r}")


def _fixed_arity(hint: Any) -> int | None:
    """The number of values a fixed-length tuple type (or an optional one) holds, else None."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        sizes = {_fixed_arity(h) for h in typing.get_args(hint)} - {None}
        return sizes.pop() if len(sizes) == 1 else None
    args = typing.get_args(hint)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return len(args)
    return None


def build_config(config_cls: type, values: Mapping[str, Any], *, where: str = "config"):
    """Instantiate the frozen dataclass ``config_cls`` from ``values``, checking keys and types.

    Errors (:class:`ConfigError`, one line) name ``where`` (e.g. ``"quick.toml: models[2].config"``)
    and the key: unknown keys (listing the valid ones), values of the wrong type, tuples of the
    wrong length (``betas = [0.9]`` for ``tuple[float, float]``), integers beyond 64 bits,
    non-finite floats, and any range the config's own ``__post_init__`` refuses.
    Lists are converted to tuples so configs stay hashable.
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} "
            f"for {config_cls.__qualname__}; "
            f"valid keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(config_cls)
    clean = {}
    for key, raw in values.items():
        value = tuple(raw) if isinstance(raw, list) else raw
        problem = _number_problem(value)
        if problem:
            raise ConfigError(f"{where}: key {key!r} {problem}")
        if not _check_type(value, hints[key]):
            arity = _fixed_arity(hints[key])
            size = f" ({arity} values)" if arity is not None else ""
            raise ConfigError(
                f"{where}: key {key!r} must be {_type_name(hints[key])}{size}, got {raw!r}"
            )
        if hints[key] is float and isinstance(value, int):
            value = float(value)
        clean[key] = value
    missing = [
        name for name, f in fields.items()
        if name not in clean and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(map(repr, missing))}")
    try:
        return config_cls(**clean)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def config_dict(config: Any) -> dict[str, Any]:
    """The fields of the dataclass ``config``, verbatim, as JSON-ready values: tuples as lists,
    non-finite floats as strings (``"inf"``)."""
    return _jsonable(dataclasses.asdict(config))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
