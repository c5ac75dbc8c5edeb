"""Reading a run config: safe YAML, ``--set a.b=c`` overrides, run names, one-line errors, dumping.

YAML is read with ``yaml.safe_load`` only: no tags, nothing that runs code. Every error is
a :class:`~distilens.errors.ConfigError` of one line that names the key (and the closest
valid key where a name is wrong).

Example:
    >>> cfg = load_config(None, overrides=["distill.epochs=5", "student.args.width=4"])
    >>> cfg.distill.epochs
    5
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..limits import MAX_CONFIG_BYTES, check_depth, load_yaml, read_text
from ..registry import did_you_mean
from .schema import DataConfig, RunConfig

__all__ = ["load_config", "apply_overrides", "check_override_keys", "validate_config", "default_run_name",
           "dump_config", "DEMO_NAME"]


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Read a YAML config (``None``: the defaults), apply ``--set`` overrides, validate.

    Raises:
        ConfigError: unreadable file, YAML syntax error (with line), unknown key (with the
            closest valid key), wrong type or out-of-range value.
    """
    raw: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = path.name
        if not path.exists():
            raise ConfigError(f"config file '{path}' does not exist; check the path")
        if path.is_dir():
            raise ConfigError(f"config '{path}' is a directory; give the path of a YAML file")
        raw = _parse_yaml(read_text(path, f"config '{path}'", max_bytes=MAX_CONFIG_BYTES), where)
    check_override_keys(overrides or [])
    apply_overrides(raw, overrides or [])
    if "name" not in raw:  # neither the file nor --set names the run: it is named after its config file and data
        raw["name"] = default_run_name(path, raw, overrides or [])
    return validate_config(raw, where)


#: The run name of the built-in demo (no config file, the default data).
DEMO_NAME = "digits-demo"


def default_run_name(path: str | Path | None, raw: dict[str, Any], overrides: list[str]) -> str:
    """The name of a run whose config sets none: its config file's stem, its data's name, or both.

    ``my.yaml`` → ``my``; ``--set data.source=csv:loans.csv`` → ``loans``; both → ``my-loans``;
    neither → ``digits-demo``. Characters a folder name may not hold become ``-``.

    Example:
        >>> default_run_name(None, {"data": {"source": "imagefolder:photos/"}}, ["data.source=imagefolder:photos/"])
        'photos'
    """
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    source = str(data.get("source", DataConfig().source))
    data_name = Path(source.split(":", 1)[-1].rstrip("/\\")).stem or source.split(":", 1)[0]
    on_command_line = any(o.split("=", 1)[0].strip() in ("data", "data.source") for o in overrides)
    if path is not None:
        parts = [Path(path).stem] + ([data_name] if on_command_line and data_name != Path(path).stem else [])
    elif source == DataConfig().source:
        return DEMO_NAME
    else:
        parts = [data_name]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-._")[:100]
    return name if name and name[0].isalnum() else f"run-{name}".rstrip("-")[:100]


def validate_config(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a plain dict into a :class:`RunConfig`, with one-line errors.

    Numbers anywhere in it (loss options included) must be finite: ``.inf`` and ``.nan``
    are refused here, before any training.
    """
    check_depth(raw, where, error=ConfigError)
    _check_finite(raw, where)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain_validation_error(exc, raw, where)) from None


def _check_finite(raw: Any, where: str) -> None:
    todo: list[tuple[Any, list[Any]]] = [(raw, [])]
    while todo:
        node, loc = todo.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{where}: '{_format_loc(loc)}' is {node}, not a finite number; give a finite value")
        if isinstance(node, dict):
            todo.extend((v, [*loc, k]) for k, v in node.items())
        elif isinstance(node, list):
            todo.extend((v, [*loc, i]) for i, v in enumerate(node))


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    data = load_yaml(text, where)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: the top level must be a mapping of keys (name:, data:, ...), "
            f"not a {type(data).__name__}"
        )
    return data


_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _parse_key(key: str) -> list[str | int]:
    """``distill.losses[0].temperature`` → ``['distill', 'losses', 0, 'temperature']``."""
    parts: list[str | int] = []
    for dotted in key.split("."):
        pos = 0
        if not dotted:
            raise ConfigError(f"--set {key}: empty part in the key; write it as a.b.c=value")
        while pos < len(dotted):
            m = _TOKEN.match(dotted, pos)
            if not m or (m.group(1) and pos > 0):
                raise ConfigError(
                    f"--set {key}: cannot read the key at '{dotted[pos:]}'; "
                    "write keys as a.b.c or a.list[0].c"
                )
            parts.append(m.group(1) if m.group(1) else int(m.group(2)))
            pos = m.end()
    return parts


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to a raw config dict in place (values are YAML scalars).

    A missing mapping is created; a list index must exist in the list it indexes (the
    config's own, or the default one when the config has none). :func:`load_config` also
    checks each key against the schema first (:func:`check_override_keys`).

    Example:
        >>> apply_overrides({}, ["distill.epochs=5"])
        {'distill': {'epochs': 5}}
    """
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(
                f"--set '{item}': expected KEY=VALUE, e.g. --set distill.epochs=5"
            )
        key, text = item.split("=", 1)
        key = key.strip()
        path = _parse_key(key)
        value = load_yaml(text, f"--set {key}: cannot read the value {_short(text)} as YAML") if text.strip() else None
        node: Any = raw
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise ConfigError(f"--set {key}: '{_format_loc(path[:i])}' is not a list; write it without [{part}]")
                if part >= len(node):
                    raise ConfigError(f"--set {key}: index [{part}] is out of range (list has {len(node)}); "
                                      f"set the whole list instead, e.g. --set {_format_loc(path[:i])}=[...]")
            elif not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{_format_loc(path[:i])}' is not a mapping, so it has no key '{part}'")
            if last:
                node[part] = value
                break
            if isinstance(part, str) and (part not in node or node[part] is None):
                node[part] = _default_at(path[: i + 1], isinstance(path[i + 1], int))
            node = node[part]
    return raw


def check_override_keys(overrides: list[str]) -> None:
    """Refuse an override whose key the schema does not have, naming the closest valid key.

    The schema is followed down to where the config is free-form: a model's ``args`` and a
    loss's own options take any key.
    """
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if "=" in item and key:
            _check_key(key, _parse_key(key))


def _check_key(key: str, path: list[str | int]) -> None:
    model: type[BaseModel] | None = RunConfig
    for i, part in enumerate(path):
        if isinstance(part, int):
            continue  # an item of a list of models (distill.losses[0]) is that model
        if part not in model.model_fields:
            if model.model_config.get("extra") != "forbid":
                return  # a loss's own options
            hint = did_you_mean(part, list(model.model_fields))
            raise ConfigError(f"--set {key}: unknown key '{_format_loc(path[: i + 1])}'{hint}; "
                              f"valid keys there: {', '.join(model.model_fields)}")
        model = _nested_model(model.model_fields[part].annotation)
        if model is None:
            return  # a free mapping (a model's args) or a plain value


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The config model inside a field's type (``X``, ``X | None``, ``list[X]``), or ``None``."""
    todo = [annotation]
    while todo:
        ann = todo.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        todo.extend(getattr(ann, "__args__", ()))
    return None


def _default_at(path: list[str | int], list_next: bool) -> Any:
    """What a missing key at ``path`` starts as: ``{}``, or when an index follows, the default list
    there as plain data (so ``distill.losses[0].temperature=2`` edits the default losses), else ``[]``.
    """
    if not list_next:
        return {}
    obj: Any = RunConfig().model_dump(mode="json")
    for part in path:
        try:
            obj = obj[part]
        except (KeyError, IndexError, TypeError):
            return []
    return obj if isinstance(obj, list) else {}  # a mapping there: indexing it fails with its own message


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML text (round-trips through :func:`load_config`)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _explain_validation_error(exc: ValidationError, raw: dict[str, Any], where: str) -> str:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    dotted = _format_loc(loc)
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        hint = did_you_mean(str(loc[-1]), list(model.model_fields)) if model else ""
        valid = f"; valid keys there: {', '.join(model.model_fields)}" if model else ""
        return f"{where}: unknown key '{dotted}'{hint}{valid}"
    value = _value_at(raw, loc)
    msg = err["msg"].removeprefix("Value error, ")
    if not loc or msg.startswith(f"{loc[0]}."):  # a check across keys: the message names them
        return f"{where}: {msg}"
    if "teacher_views" in loc:  # a union's error names its branches; one message says what works
        dotted, value = "distill.teacher_views", _value_at(raw, ["distill", "teacher_views"])
    shown = f" (got {_short(value)})" if value is not _MISSING else ""
    return f"{where}: '{dotted}': {msg}{shown}"


_MISSING = object()


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error line never carries a whole file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _format_loc(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: list[Any]) -> type[BaseModel] | None:
    model: type[BaseModel] = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def _value_at(raw: Any, loc: list[Any]) -> Any:
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node
