"""Typed configuration: a mapping from a pipeline parameter -> a frozen, checked dataclass, once.

Every setting a run takes as a mapping (a provider's ``hyperparameters``, ``eval_options``, the
self-play settings) is declared as a frozen dataclass whose fields carry help text and whether they
enter the job key (:func:`setting`). :func:`from_mapping` builds it at the border (the first task):

* unknown keys fail with the list of valid ones and the closest match (``n_epoch`` -> ``n_epochs``);
* KFP hands dict numbers over as floats (3 -> 3.0): a whole float is accepted for an ``int`` field,
  3.5 is refused; an ``int`` is accepted for a ``float`` field; ``"true"``/``"false"`` for a ``bool``;
* a field typed as another config dataclass is built from a nested mapping the same way;
* the dataclass's own ``__post_init__`` checks run, and any error names the field and the fix.

Later layers receive the object and never re-read the dict; :func:`job_key_fields` gives the fields
that say *what* is trained (the job key), leaving out those that say *how* a run goes (budget, polling).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C")

# Field metadata keys.
HELP = "help"
JOB_KEY = "job_key"

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A parameter is invalid; the message names the parameter, the bad value and the fix."""


def setting(default: Any = _MISSING, *, help: str, job_key: bool = True, default_factory: Any = _MISSING) -> Any:
    """A config dataclass field with its help text and whether it enters the job key.

    Args:
        default: the default value.
        help: one line for the docs, the CLI and error messages.
        job_key: True when the value changes what is trained (a new value = a new paid job); False
            for settings of how the run goes (budget, deadline, polling, retries, request caps).
        default_factory: instead of ``default``, for mutable defaults.
    """
    metadata = {HELP: help, JOB_KEY: job_key}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_number(name: str, value: Any, lo: float, hi: float | None = None, *, integer: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a number (an integer if asked) in ``[lo, hi]``."""
    ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
    if not ok or value < lo or (hi is not None and value > hi):
        kind = "an integer" if integer else "a number"
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}={value!r} must be {kind} {rng}")


def close_match(name: str, valid: typing.Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (case-insensitive), or None when none is close."""
    valid = list(valid)
    lowered = {v.lower(): v for v in valid}
    hit = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hit[0]] if hit else None


def unknown_keys_message(what: str, unknown: typing.Sequence[str], valid: typing.Sequence[str], owner: str = "") -> str:
    """``"<what>: unknown key 'x' for <owner> (did you mean 'y'?); valid keys are [...]"``."""
    hints = []
    for k in unknown:
        near = close_match(k, valid)
        hints.append(f"{k!r} (did you mean {near!r}?)" if near else repr(k))
    plural = "key" if len(unknown) == 1 else "keys"
    where = f" for {owner}" if owner else ""
    return f"{what}: unknown {plural} {', '.join(hints)}{where}; valid keys are {sorted(valid)}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _options(tp: Any) -> tuple[Any, ...]:
    """The members of a union type (``int | str`` -> ``(int, str)``), else ``(tp,)``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return (tp,)


def _coerce(value: Any, tp: Any, what: str) -> Any:
    """``value`` as type ``tp`` where JSON/KFP changed it on the way; other values pass unchanged
    (the dataclass's own checks judge them)."""
    if tp is Any:
        return value
    opts = _options(tp)
    if value is None:
        return None
    for opt in opts:  # already of an accepted type (a bool is not a number here)
        base = typing.get_origin(opt) or opt
        if isinstance(base, type) and isinstance(value, base) and not (base in (int, float) and isinstance(value, bool)):
            return value
    for opt in opts:
        base = typing.get_origin(opt) or opt
        if _is_config(opt) and isinstance(value, Mapping):
            return from_mapping(opt, value, what=what)
        if base is int and isinstance(value, float) and not isinstance(value, bool):
            if value.is_integer():
                return int(value)
            if not any((typing.get_origin(o) or o) is float for o in opts):
                raise ConfigError(f"{what}={value!r} must be an integer (a whole number such as {int(value)})")
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if base is bool and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if base is tuple and isinstance(value, list | tuple):
            return tuple(value)
    return value


def from_mapping(cls: type[C], mapping: Mapping[str, Any] | None, *, what: str = "hyperparameters",
                 owner: str = "") -> C:
    """Build the frozen config dataclass ``cls`` from ``mapping`` (a pipeline parameter).

    Args:
        cls: a dataclass (its ``__post_init__`` checks values).
        mapping: the parameter's value; None or ``{}`` = every default.
        what: the parameter's name, for messages (``hyperparameters``, ``eval_options``).
        owner: who reads it, for messages (``the openai provider``).

    Raises:
        ConfigError: not a mapping, an unknown key (with the valid keys and the closest match), a
            value of the wrong type, or a value the dataclass refuses; the message names the field.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{what} must be an object (a mapping of settings), got {type(mapping).__name__} {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in mapping if k not in fields]
    if unknown:
        raise ConfigError(unknown_keys_message(what, unknown, list(fields), owner))
    hints = _hints(cls)
    kwargs = {name: _coerce(value, hints.get(name, Any), f"{what}.{name}") for name, value in mapping.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_prefix(what, str(exc))) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(_prefix(what, str(exc))) from exc


_FIELD_FIRST = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*\s*[=:]")


def _prefix(what: str, message: str) -> str:
    """``what.field=...`` when the dataclass's message starts with the field, else ``what: ...``."""
    if message.startswith(what):
        return message
    return f"{what}.{message}" if _FIELD_FIRST.match(message) else f"{what}: {message}"


def to_mapping(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able data (nested configs as mappings, tuples as lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(config)


def changed_fields(config: Any) -> dict[str, Any]:
    """The fields of ``config`` whose value differs from the default, as plain data.

    ``from_mapping(type(config), changed_fields(config)) == config``: what the first task passes on to
    later tasks (a KFP dict output holds no nulls, and an unchanged default needs no passing).
    """
    default = type(config)()
    out = {}
    for f in dataclasses.fields(config):
        value, base = getattr(config, f.name), getattr(default, f.name)
        if value != base:
            out[f.name] = changed_fields(value) if dataclasses.is_dataclass(value) else to_mapping(value)
    return out


def job_key_fields(config: Any) -> dict[str, Any]:
    """The fields of ``config`` that enter the job key (``job_key`` metadata, default True), as data."""
    out = {}
    for f in dataclasses.fields(config):
        if f.metadata.get(JOB_KEY, True):
            out[f.name] = to_mapping(getattr(config, f.name))
    return out


def describe(cls: type) -> list[dict[str, Any]]:
    """One record per field: name, type, default, help, job_key (for docs and ``--help`` output)."""
    hints = _hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:
            default = f.default_factory()
        else:
            default = None
        rows.append({
            "name": f.name,
            "type": getattr(hints.get(f.name), "__name__", str(hints.get(f.name, ""))),
            "default": to_mapping(default),
            "help": f.metadata.get(HELP, ""),
            "job_key": bool(f.metadata.get(JOB_KEY, True)),
        })
    return rows
