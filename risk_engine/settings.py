"""The one builder of typed settings from plain mappings (parsed YAML), and its inverse.

Every settings class is a frozen dataclass. :func:`build` turns a mapping into one, checking
each key against the class's fields and each value against the field's type hint; the
class's ``__post_init__`` checks ranges with :func:`require`. A bad key or value is a
:class:`~risk_engine.errors.ConfigError` naming the full dotted key, e.g.
``governance.limits.desks.tech_mm.max_position_share``. Adding a config key is adding a
field (and its range check) to the settings class that owns it.

Types understood: ``bool``, ``int``, ``float`` (numeric strings too: YAML 1.1 reads ``5e6``
as a string), ``str``, ``datetime.date`` (ISO string), ``Literal[...]``, ``X | None``,
``tuple[X, ...]``, fixed ``tuple[X, Y]``, ``Mapping[str, str]`` (scalar values only) and
nested settings dataclasses. A ``tuple[tuple[K, V], ...]`` field also accepts a mapping
``{k: v}`` (stored as sorted pairs).

Field metadata shapes the YAML where it is not one mapping per dataclass:

``FLATTEN``
    the nested dataclass's keys sit in the parent's mapping (``worst_case:`` holds the stage
    switches and the model settings side by side).
``MERGE_OVER: "name"``
    a mapping of ``entry -> settings`` whose raw entries are merged over the raw value of the
    sibling key ``name`` (``governance.limits.desks`` over ``governance.limits.default``).
``DEFAULT_FROM: "section.key"``
    when the key is absent or null, the value of that dotted key of the root being built
    (``worst_case.confidence_levels`` defaults to ``risk.confidence_levels``).

This module imports nothing of the engine but :mod:`risk_engine.errors`, so every settings
module can use :func:`require` without an import cycle.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin, get_type_hints

from risk_engine.errors import ConfigError

FLATTEN = "flatten"
"""Field metadata key: the nested dataclass's keys sit in the parent mapping."""
MERGE_OVER = "merge_over"
"""Field metadata key: entries are merged over the raw value of the named sibling key."""
DEFAULT_FROM = "default_from"
"""Field metadata key: absent or null means the value of this dotted key of the root."""

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SCALARS = (str, int, float, bool)


class SettingError(ConfigError):
    """An out-of-range value of one settings field, keyed relative to its section.

    Raised by :func:`require` inside a settings class's ``__post_init__``; :func:`build`
    re-raises it as a :class:`ConfigError` naming the full dotted key.

    Parameters
    ----------
    key : str
        The field's key relative to its section (``max_position_share``,
        ``confidence_levels[1]``, ``var_limits.0.99``).
    value
        The offending value.
    rule : str
        What is accepted, in words.
    """

    def __init__(self, key: str, value: Any, rule: str) -> None:
        self.key, self.value, self.rule = key, value, rule
        super().__init__(out_of_range(key, value, rule))


def out_of_range(key: str, value: Any, rule: str) -> str:
    """The message of an out-of-range value: ``config key 'k' = v is out of range: rule``."""
    return f"config key '{key}' = {value!r} is out of range: {rule}"


def require(ok: bool, key: str, value: Any, rule: str) -> None:
    """Raise :class:`SettingError` for ``key`` unless ``ok``.

    Parameters
    ----------
    ok : bool
        The check's outcome.
    key : str
        The field's key relative to the settings class being checked.
    value
        The value checked (shown in the message).
    rule : str
        The accepted range in words, e.g. ``"a fraction in (0, 1]"``.
    """
    if not ok:
        raise SettingError(key, value, rule)


def require_levels(key: str, values: Any) -> tuple[float, ...]:
    """Check a list of confidence levels (DESIGN section 3) and return it as floats.

    Non-empty, each a fraction in (0, 1) (0.99, never 99), no duplicates.
    """
    levels = tuple(float(x) for x in values)
    require(len(levels) > 0, key, values, "a non-empty list")
    for i, level in enumerate(levels):
        require(0.0 < level < 1.0, f"{key}[{i}]", level,
                "a confidence level is a fraction in (0, 1): write 0.99, not 99")
    require(len(set(levels)) == len(levels), key, levels, "no duplicates")
    return levels


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _init_fields(cls: Any) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def yaml_keys(cls: Any) -> list[str]:
    """The keys a settings class accepts in its mapping (flattened fields' keys included)."""
    out: list[str] = []
    for f in _init_fields(cls):
        if f.metadata.get(FLATTEN):
            out.extend(yaml_keys(_dataclass_of(cls, f.name)))
        else:
            out.append(f.name)
    return out


def _dataclass_of(cls: Any, name: str) -> Any:
    typ = get_type_hints(cls)[name]
    if not dataclasses.is_dataclass(typ):
        raise TypeError(f"{cls.__name__}.{name}: only a dataclass field can be flattened")
    return typ


def _lookup(root: Mapping[str, Any], dotted: str) -> Any:
    head, *rest = dotted.split(".")
    if head not in root:
        raise RuntimeError(f"{dotted!r} is used as a default before it is built")
    value = root[head]
    for part in rest:
        value = getattr(value, part)
    return value


def build(cls: Any, data: Any, key: str = "", *,
          localns: Mapping[str, Any] | None = None,
          root: dict[str, Any] | None = None) -> Any:
    """Build settings dataclass ``cls`` from a plain mapping, checking every key and value.

    Parameters
    ----------
    cls : type
        A frozen settings dataclass.
    data : mapping
        Its raw values (parsed YAML); keys not given take the field defaults.
    key : str
        Dotted key of ``data`` in the whole config ("" at the top level), named in errors.
    localns : mapping, optional
        Names to resolve string type hints with (types imported lazily by the caller).
    root : dict, optional
        The top-level values built so far, for ``DEFAULT_FROM`` fields; at the top level
        (``key == ""``) the values built are collected there.

    Returns
    -------
    object
        The ``cls`` instance.

    Raises
    ------
    ConfigError
        For an unknown or missing key, a value of the wrong type or out of range; the
        message names the full dotted key.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{key}' must be a mapping, got {data!r}")
    if root is None:
        root = {}
    known = yaml_keys(cls)
    unknown = sorted(set(map(str, data)) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(_join(key, u) for u in unknown)}; "
            f"known keys here: {', '.join(known)}"
        )
    hints = get_type_hints(cls, localns=dict(localns) if localns else None)
    kwargs: dict[str, Any] = {}
    for f in _init_fields(cls):
        typ = hints[f.name]
        if f.metadata.get(FLATTEN):
            sub = yaml_keys(typ)
            kwargs[f.name] = build(typ, {k: v for k, v in data.items() if k in sub}, key,
                                   localns=localns, root=root)
            continue
        name = _join(key, f.name)
        value = data.get(f.name)
        given = f.name in data
        if value is None and DEFAULT_FROM in f.metadata:  # absent or null: take the source
            source = f.metadata[DEFAULT_FROM]
            given = source.split(".")[0] in root
            if given:
                value = _lookup(root, source)
        if not given:
            if dataclasses.is_dataclass(typ):  # built too: nested defaults may come from
                value = {}                     # DEFAULT_FROM
            elif (f.default is dataclasses.MISSING
                  and f.default_factory is dataclasses.MISSING):
                raise ConfigError(f"config key '{name}' is required")
            else:
                continue
        if MERGE_OVER in f.metadata:
            value = _merged_entries(name, value, data.get(f.metadata[MERGE_OVER]))
        kwargs[f.name] = _coerce(name, value, typ, localns, root)
        if not key:
            root[f.name] = kwargs[f.name]
    try:
        return cls(**kwargs)
    except SettingError as exc:
        raise ConfigError(out_of_range(_join(key, exc.key), exc.value, exc.rule)) from exc
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section '{key or 'top level'}': {exc}") from exc


def _merged_entries(key: str, value: Any, base: Any) -> Any:
    if value is None:  # ``desks:`` with every entry commented out: no entries
        return {}
    if isinstance(value, list | tuple):
        value = _pairs_to_mapping(key, value)
    if not isinstance(value, Mapping):
        return value  # _coerce names the bad type
    base = {} if base is None else base
    if not isinstance(base, Mapping):
        return value  # the sibling's own coercion names it
    out = {}
    for name, over in value.items():
        if not isinstance(over, Mapping):
            raise ConfigError(f"config key '{key}.{name}' must be a mapping, got {over!r}")
        out[name] = {**base, **over}
    return out


def _pairs_to_mapping(key: str, value: list[Any] | tuple[Any, ...]) -> dict[Any, Any]:
    out = {}
    for i, item in enumerate(value):
        if not (isinstance(item, list | tuple) and len(item) == 2):
            raise ConfigError(f"config key '{key}[{i}]' must be a [key, value] pair, "
                              f"got {item!r}")
        out[item[0]] = item[1]
    return out


def _is_pairs(typ: Any) -> bool:
    args = get_args(typ)
    return (get_origin(typ) is tuple and len(args) == 2 and args[1] is Ellipsis
            and get_origin(args[0]) is tuple and len(get_args(args[0])) == 2
            and get_args(args[0])[1] is not Ellipsis)


def _coerce(key: str, value: Any, typ: Any, localns: Mapping[str, Any] | None,
            root: dict[str, Any]) -> Any:
    origin, args = get_origin(typ), get_args(typ)
    if typ is Any:
        return value
    if origin is not None and type(None) in args:  # X | None
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0], localns, root)
    if dataclasses.is_dataclass(typ):
        return build(typ, value, key, localns=localns, root=root)
    if origin is Literal:
        if isinstance(value, bool) or value not in args:
            raise ConfigError(out_of_range(key, value, f"one of {', '.join(map(repr, args))}"))
        return value
    if origin is tuple:
        if _is_pairs(typ) and isinstance(value, Mapping):
            k_type, v_type = get_args(args[0])
            return tuple(sorted(
                (str(k) if k_type is str else _coerce(f"{key}.{k}", k, k_type, localns, root),
                 _coerce(f"{key}.{k}", v, v_type, localns, root))
                for k, v in value.items()))
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", v, args[0], localns, root)
                         for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key '{key}' must be a list of {len(args)}, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, t, localns, root)
                     for i, (v, t) in enumerate(zip(value, args, strict=True)))
    if origin is Mapping or typ is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        out = {}
        for k, v in value.items():
            if not isinstance(v, _SCALARS):
                raise ConfigError(f"config key '{key}.{k}' must be a string or a number, "
                                  f"got {type(v).__name__}")
            out[str(k)] = str(v)
        return out
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if typ is dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError as exc:
            raise ConfigError(
                f"config key '{key}' must be a date YYYY-MM-DD, got {value!r}") from exc
    raise TypeError(f"config key '{key}': unsupported type {typ}")  # pragma: no cover


def to_plain(obj: Any) -> Any:
    """Plain, YAML-shaped form of settings, the inverse of :func:`build`.

    ``build(type(obj), to_plain(obj))`` equals ``obj``. Flattened fields are merged into
    their parent, pairs keyed by strings become mappings, other tuples lists, dates ISO
    strings; fields with ``init=False`` are left out.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in _init_fields(obj):
            value = to_plain(getattr(obj, f.name))
            if f.metadata.get(FLATTEN):
                out.update(value)
            else:
                out[f.name] = value
        return out
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        if obj and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)
                       for x in obj):
            return {k: to_plain(v) for k, v in obj}
        return [to_plain(x) for x in obj]
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj
