"""Declaring a config field once: default, thesis name, validation rule and help text live on the field.

Every typed config of the platform (extractor, prior, model, schedule, data, run context) is a frozen dataclass
whose fields are made with `option(...)`; `Validated.__post_init__` parses and checks each field from its
declaration, so a value is validated by exactly one rule wherever it comes from (a table spec, `--set`, an
Optuna sample, a checkpoint). A check returns None when the value is fine, else the reason (shown to the user
as "<Class>.<field>=<value>: <reason>").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from srprior.errors import UserError

Check = Callable[[Any], "str | None"]


class ConfigError(UserError, ValueError):
    """A config value is invalid; the message names the field and the rule."""


def option(default: Any = MISSING, check: Check | None = None, *, thesis: str = "", help: str = "",
           parse: Callable[[Any], Any] | None = None, default_factory: Any = MISSING) -> Any:
    """A dataclass field carrying its validation rule, its thesis name and a help line."""
    meta = {"check": check, "thesis": thesis, "help": help, "parse": parse}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Validated:
    """Mixin: parse and check every `option` field on construction (frozen dataclasses stay frozen)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            parse, check = f.metadata.get("parse"), f.metadata.get("check")
            if parse is not None:
                try:
                    value = parse(value)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{type(self).__name__}.{f.name}={getattr(self, f.name)!r}: {exc}") from None
                object.__setattr__(self, f.name, value)
            problem = check(value) if check is not None else None
            if problem:
                raise ConfigError(f"{type(self).__name__}.{f.name}={value!r}: {problem}")


def describe(cls: type) -> list[tuple[str, Any, str, str]]:
    """(leaf name, default, thesis name, help) of every leaf field of a (nested) config class, from the fields'
    own metadata: the `--set` help of `srprior sweep` and README's field table are generated from it."""
    out = []
    for f in fields(cls):
        sub = _nested(f)
        if sub is not None:
            out += describe(sub)
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        out.append((f.name, default, f.metadata.get("thesis", ""), f.metadata.get("help", "")))
    return out


# ---------------------------------------------------------------------------------------------- checks
def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int | None = None, high: int | None = None, odd: bool = False) -> Check:
    """An int in [low, high] (either bound optional), optionally odd (centred regions)."""
    def check(value: Any) -> str | None:
        ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
        if ok and (not odd or value % 2 == 1):
            return None
        return f"must be {'an odd' if odd else 'an'} integer{_bounds(low, high)}"
    return check


def number(low: float | None = None, high: float | None = None, low_open: bool = False) -> Check:
    """A finite number in [low, high] ((low, high] with low_open)."""
    def check(value: Any) -> str | None:
        if is_number(value) and (low is None or (value > low if low_open else value >= low)) and \
                (high is None or value <= high):
            return None
        return f"must be a finite number{_bounds(low, high, low_open)}"
    return check


def one_of(choices: Sequence[Any]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}"
    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def text(value: Any) -> str | None:
    bad = not isinstance(value, str) or not value or any(c in value for c in "'`\n")
    return "must be a non-empty string without quotes" if bad else None


def _bounds(low: Any, high: Any, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    return f" <= {high:g}" if high is not None else ""


def to_float(value: Any) -> Any:
    """Ints and numeric strings become floats (`--set lambda_ap=1e-4`, JSON); anything else is left to the check."""
    if is_int(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# ---------------------------------------------------------------------------------------------- flat names
def _nested(f: Any) -> type | None:
    """The config class of a nested field (declared with default_factory=<Validated subclass>), else None."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and issubclass(factory, Validated) else None


def leaf_names(cls: type) -> dict[str, tuple[str, ...]]:
    """Leaf field name -> its path through nested configs. Leaf names are unique, so `--set n_ssr=3`, table
    overrides and MLflow params can use the short name."""
    out: dict[str, tuple[str, ...]] = {}
    for f in fields(cls):
        sub = _nested(f)
        items = {k: (f.name, *p) for k, p in leaf_names(sub).items()} if sub else {f.name: (f.name,)}
        for name, path in items.items():
            if name in out:
                raise TypeError(f"{cls.__name__}: leaf name {name!r} is declared twice ({out[name]} and {path})")
            out[name] = path
    return out


def build(cls: type, flat: dict[str, Any], where: str = "") -> Any:
    """`cls` from leaf names (defaults for the rest); unknown names are an error listing the valid ones."""
    names = leaf_names(cls)
    unknown = sorted(set(flat) - set(names))
    if unknown:
        raise ConfigError(f"{where + ': ' if where else ''}unknown field(s) {unknown}; valid: {', '.join(sorted(names))}")
    return _build(cls, flat)


def _build(cls: type, flat: dict[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        sub = _nested(f)
        if sub is not None:
            kwargs[f.name] = _build(sub, {k: v for k, v in flat.items() if k in leaf_names(sub)})
        elif f.name in flat:
            kwargs[f.name] = flat[f.name]
    return cls(**kwargs)


def flatten(obj: Any) -> dict[str, Any]:
    """Leaf name -> value of a (nested) config."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        out.update(flatten(value) if isinstance(value, Validated) else {f.name: value})
    return out


def to_int(value: Any) -> Any:
    """'3' -> 3 (from `--set`); 3.0, True and the rest are left to the check (which refuses them)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def to_bool(value: Any) -> Any:
    """'true'/'false' (and 1/0, yes/no) from `--set`; anything else is left to the check."""
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    return value
