"""Declaring a setting once: its type and default (a dataclass field) and what values
it allows (bounds, choices) in the field's metadata; `check` enforces them and names
the key, what is wrong and the fix.

    lag: int = setting(8, ge=1, doc="steps between a symbol and its echo")
"""
from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """A bad config value; the message names the key and the fix."""


def setting(default: Any = dataclasses.MISSING, *, ge=None, gt=None, lt=None, choices=None,
            each_ge=None, factory=None, doc: str = ""):
    """A dataclass field with its allowed values: numeric bounds (ge, gt, lt), `choices`,
    `each_ge` (every element of a list), and a one-line `doc`."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, lt=lt, choices=choices, each_ge=each_ge,
                                  doc=doc).items() if v is not None and v != ""}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check(obj, prefix: str) -> None:
    """Enforce every field's metadata of dataclass `obj` (recursively); raise ConfigError
    naming `prefix.field`. None passes (an optional setting left unset)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(v):
            check(v, key)
            continue
        m = f.metadata
        if v is None or not m:
            continue
        if "choices" in m and v not in m["choices"]:
            raise ConfigError(f"{key}: must be one of {list(m['choices'])}, got {v!r} "
                              f"(set {key}={m['choices'][0]})")
        for name, ok, word in (("ge", lambda a, b: a >= b, ">="), ("gt", lambda a, b: a > b, ">"),
                               ("lt", lambda a, b: a < b, "<")):
            if name in m and _number(v) and not ok(v, m[name]):
                raise ConfigError(f"{key}: must be {word} {m[name]}, got {v} (set {key}=<a value {word} {m[name]}>)")
        if "each_ge" in m:
            if not isinstance(v, (list, tuple)) or not v or not all(_number(i) and i >= m["each_ge"] for i in v):
                raise ConfigError(f"{key}: must be a non-empty list of values >= {m['each_ge']}, got {v!r}")


def settings_of(cls) -> list[str]:
    """The field names of a config class, for messages."""
    return [f.name for f in dataclasses.fields(cls)]


def did_you_mean(word: str, options, prefix: str = "") -> str:
    """' (did you mean <prefix><the closest of options>?)', or '' when none is close (difflib)."""
    import difflib
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""
