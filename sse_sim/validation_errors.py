"""Pydantic validation errors turned into one-line messages: where, what is wrong, what is allowed.

Scenarios (YAML) and events (JSON) both validate with pydantic, and both show users the same
kind of message, made here: the key path the user wrote (``publishers[0].kind``, or as a JSON
path ``$.event_data.message_id``), then ``expected <what is allowed>, got <what was there>``,
``required field is missing`` or ``unknown key (allowed: <keys>)``.

Given the model class that was validated, the path drops what pydantic adds but the user never
wrote (the tag of a discriminated union, the member names of a plain union), an unknown key
lists the keys allowed there, and a plain union's failed members merge into one message
(``expected 'all' or a valid list``). This module uses only pydantic and the standard library,
so :mod:`sse_sim.events` can share it and still stand alone.

>>> from pydantic import BaseModel, ConfigDict, ValidationError
>>> class Gateway(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     buffer_size: int = 50
>>> try:
...     Gateway.model_validate({"bufer_size": 10})
... except ValidationError as exc:
...     [str(p) for p in describe_errors(exc, Gateway)]
['$.bufer_size: unknown key (allowed: buffer_size)']
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core.core_schema import ErrorType

__all__ = ["FieldProblem", "describe_error", "describe_errors", "describe_value", "format_path"]

Loc = tuple[str | int, ...]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PYDANTIC_TYPES = frozenset(typing.get_args(ErrorType))
_OBJECT_TYPES = frozenset({"model_type", "model_attributes_type", "dict_type", "dataclass_type"})
_BOUNDS = {
    "greater_than": ("gt", "a number greater than {}"),
    "greater_than_equal": ("ge", "a number of at least {}"),
    "less_than": ("lt", "a number less than {}"),
    "less_than_equal": ("le", "a number of at most {}"),
    "multiple_of": ("multiple_of", "a multiple of {}"),
}
_PREFIXES = ("Value error, ", "Assertion failed, ")
# Tails pydantic appends to "Input should be X": they restate the input, which "got" shows.
_TAILS = re.compile(r", (unable to |got |input is ).*$")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One validation problem: where (``loc``, the key path as written), what is wrong, what is allowed.

    ``message`` is complete on its own (it already says what is allowed); ``allowed`` repeats
    that part alone, or is None when there is nothing to choose from (a missing field, a
    failed cross-field check).
    """

    loc: Loc
    message: str
    allowed: str | None = None

    def path(self, root: str = "$") -> str:
        """The location as text; see :func:`format_path`."""
        return format_path(self.loc, root)

    def __str__(self) -> str:
        return f"{self.path()}: {self.message}"


def format_path(loc: Sequence[str | int], root: str = "$") -> str:
    """A key path as text: ``$.a.b[0]`` (JSON path), or ``a.b[0]`` with ``root=""``.

    Odd keys are quoted, ``$["a b"]``. The empty path is ``root``, or ``(top level)`` when
    ``root`` is empty.

    >>> format_path(("event_data", "message_id")), format_path((0, "a b")), format_path(("publishers", 2, "file"), "")
    ('$.event_data.message_id', '$[0]["a b"]', 'publishers[2].file')
    """
    out = root
    for key in loc:
        if isinstance(key, int):
            out += f"[{key}]"
        elif _IDENT.fullmatch(key):
            out += f".{key}" if out else key
        else:
            out += f"[{json.dumps(key)}]"
    return out or "(top level)"


def describe_value(value: Any) -> str:
    """A short description of a value for error messages: its JSON type and a clipped repr.

    >>> describe_value("abc"), describe_value(True), describe_value([1, 2])
    ("string 'abc'", 'boolean true', 'array of 2 items')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean true" if value else "boolean false"
    if isinstance(value, int | float | Decimal):
        text = str(value)
        kind = "integer" if isinstance(value, int) else "number"
    elif isinstance(value, str):
        text, kind = repr(value), "string"
    elif isinstance(value, list | tuple):
        return f"array of {len(value)} item{'' if len(value) == 1 else 's'}"
    elif isinstance(value, dict):
        return f"object with {len(value)} field{'' if len(value) == 1 else 's'}"
    else:
        text, kind = repr(value), type(value).__name__
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def describe_error(error: Mapping[str, Any], model: type[BaseModel] | None = None) -> FieldProblem:
    """One pydantic error dict (an item of ``ValidationError.errors()``) as a :class:`FieldProblem`.

    ``model`` is the class that was validated; without it the path is pydantic's ``loc`` as is
    and an unknown key cannot list the allowed ones.
    """
    return _describe(error, model)[0]


def describe_errors(
    errors: ValidationError | Iterable[Mapping[str, Any]], model: type[BaseModel] | None = None
) -> list[FieldProblem]:
    """Every error of a validation as :class:`FieldProblem` s, in pydantic's order.

    Where a value matched no member of a plain union (``int | Literal["all"]``), pydantic
    reports one error per member; they become one problem. If the value had the shape of a
    member and failed deeper inside it (``[1, -1]`` for ``Literal["all"] | list[NonNegInt]``),
    only the deeper problems are kept: the other members were not what the user meant.
    """
    items = errors.errors(include_url=False) if isinstance(errors, ValidationError) else list(errors)
    described = [_describe(e, model) for e in items]
    deep = {u for p, u in described if u is not None and len(p.loc) > len(u)}
    out: list[FieldProblem] = []
    merged: dict[Loc, int] = {}
    for problem, union_at in described:
        if union_at is None:
            out.append(problem)
        elif union_at in deep:
            if len(problem.loc) > len(union_at):
                out.append(problem)
        elif union_at in merged:
            i = merged[union_at]
            out[i] = _merge(out[i], problem)
        else:
            merged[union_at] = len(out)
            out.append(problem)
    return out


# ---------------------------------------------------------------------------------- messages


def _describe(error: Mapping[str, Any], model: type[BaseModel] | None) -> tuple[FieldProblem, Loc | None]:
    raw: Loc = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    msg = " ".join(str(error.get("msg", "invalid value")).split())
    value = error.get("input")
    ctx = error.get("ctx") or {}
    walk = _walk(model, raw) if model is not None else _Walk(raw, None, None, None)
    loc = walk.loc
    got = describe_value(value)

    if kind == "missing":
        return FieldProblem(loc, "required field is missing"), walk.union_at
    if kind == "extra_forbidden":
        parent = _walk(model, raw[:-1]).end if model is not None else None
        owner = _model_of(parent)
        if owner is None:
            return FieldProblem(loc, "unknown key"), None
        allowed = ", ".join(sorted(_keys(owner)))
        return FieldProblem(loc, f"unknown key (allowed: {allowed})", allowed), None
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "")).strip("'")
        tags = ctx.get("expected_tags") or _tags_text(walk.end, walk.discriminator)
        if not _IDENT.fullmatch(key):
            return FieldProblem(loc, msg, tags or None), walk.union_at
        if kind == "union_tag_not_found":
            extra = f" (expected one of {tags})" if tags else ""
            return FieldProblem((*loc, key), f"required field is missing{extra}", tags or None), walk.union_at
        tag = value.get(key, ctx.get("tag")) if isinstance(value, dict) else ctx.get("tag")
        return FieldProblem((*loc, key), f"expected one of {tags}, got {describe_value(tag)}", tags), walk.union_at
    if kind in ("literal_error", "enum"):
        allowed = str(ctx.get("expected", ""))
    elif kind in _OBJECT_TYPES:
        key = walk.discriminator or _discriminator(walk.end)
        tags = _tags_text(walk.end, key)
        allowed = f"a JSON object with a {key} key ({tags})" if tags and key else "a JSON object"
    elif kind in _BOUNDS:
        name, text = _BOUNDS[kind]
        allowed = text.format(_number(ctx.get(name)))
    elif kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        allowed = f"{'at least' if kind == 'too_short' else 'at most'} {n} item{'' if n == 1 else 's'}"
    elif kind in ("string_too_short", "string_too_long"):
        n = ctx.get("min_length" if kind == "string_too_short" else "max_length")
        bound = "at least" if kind == "string_too_short" else "at most"
        allowed = f"a string of {bound} {n} character{'' if n == 1 else 's'}"
    elif kind in ("value_error", "assertion_error"):
        for prefix in _PREFIXES:
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        return FieldProblem(loc, msg), walk.union_at
    elif kind not in _PYDANTIC_TYPES:
        # A custom error (PydanticCustomError) already reads "expected X, got Y" or says its own.
        allowed = msg[len("expected ") : msg.rindex(", got ")] if msg.startswith("expected ") and ", got " in msg else None
        return FieldProblem(loc, msg, allowed), walk.union_at
    elif msg.startswith("Input should be "):
        allowed = _TAILS.sub("", msg[len("Input should be ") :])
    else:
        scalar = not isinstance(value, dict | list | tuple)
        return FieldProblem(loc, f"{msg}, got {got}" if scalar else msg), walk.union_at
    return FieldProblem(loc, f"expected {allowed}, got {got}", allowed), walk.union_at


def _merge(a: FieldProblem, b: FieldProblem) -> FieldProblem:
    if a.allowed is None or b.allowed is None:
        return a
    allowed = f"{a.allowed} or {b.allowed}"
    got = a.message[a.message.rindex(", got ") :] if ", got " in a.message else ""
    return FieldProblem(a.loc, f"expected {allowed}{got}", allowed)


def _number(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


# ------------------------------------------------------------------------- walking the model


@dataclass(frozen=True, slots=True)
class _Walk:
    loc: Loc  # the path the user wrote
    end: Any  # the annotation the path ends at (None: unknown)
    union_at: Loc | None  # where a plain union was entered, if one was
    discriminator: str | None


def _walk(model: type[BaseModel] | None, raw: Loc) -> _Walk:
    """Follow pydantic's ``loc`` through the annotations of ``model``, dropping the union tags in it."""
    clean: list[str | int] = []
    ann: Any = model
    disc: str | None = None
    union_at: Loc | None = None
    for part in raw:
        ann, found = _unwrap(ann)
        disc = found or disc
        members = _members(ann)
        if members is not None:
            tagged = _tag_map(members, disc)
            if tagged and isinstance(part, str) and part in tagged:
                ann, disc = tagged[part], None
                continue
            if not tagged and isinstance(part, str):
                # A plain union: pydantic names the member it tried, e.g. "literal['all']".
                union_at = tuple(clean)
                ann, disc = _member_named(members, part), None
                continue
        clean.append(part)
        ann, disc = _child(ann, part)
    ann, found = _unwrap(ann)
    return _Walk(tuple(clean), ann, union_at, found or disc)


def _unwrap(ann: Any) -> tuple[Any, str | None]:
    """Strip ``Annotated`` and ``Optional``; return the discriminator a Field() in it names."""
    disc = None
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            args = typing.get_args(ann)
            for meta in args[1:]:
                if isinstance(meta, FieldInfo) and isinstance(meta.discriminator, str):
                    disc = meta.discriminator
            ann = args[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) == 1:
                ann = args[0]
                continue
        return ann, disc


def _members(ann: Any) -> list[Any] | None:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [_unwrap(a)[0] for a in typing.get_args(ann) if a is not type(None)]
    return None


def _model_of(ann: Any) -> type[BaseModel] | None:
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _tag_map(members: list[Any], disc: str | None) -> dict[str, Any]:
    if disc is None:
        return {}
    tags: dict[str, Any] = {}
    for member in members:
        owner = _model_of(member)
        field = _field(owner, disc) if owner is not None else None
        if field is not None:
            for tag in typing.get_args(field.annotation):
                tags[str(tag)] = member
    return tags


def _tags_text(ann: Any, key: str | None = None) -> str:
    members = _members(ann)
    key = key or _discriminator(ann)
    if members is None or key is None:
        return ""
    return ", ".join(repr(tag) for tag in _tag_map(members, key))


def _discriminator(ann: Any) -> str | None:
    """The tag key of a discriminated union of models (the Literal field every member has)."""
    members = _members(ann)
    models = [_model_of(m) for m in members or []]
    if not models or None in models:
        return None
    shared = set.intersection(*(set(m.model_fields) for m in models if m is not None))
    for name in sorted(shared):
        if all(typing.get_origin(m.model_fields[name].annotation) is typing.Literal for m in models if m):
            return _alias(models[0].model_fields[name], name)  # type: ignore[union-attr]
    return None


def _member_named(members: list[Any], tag: str) -> Any:
    for member in members:
        owner = _model_of(member)
        if owner is not None and tag == owner.__name__:
            return member
        origin = typing.get_origin(member)
        if origin is not None and tag.startswith(f"{getattr(origin, '__name__', '')}["):
            return member
    return None


def _child(ann: Any, part: str | int) -> tuple[Any, str | None]:
    """The annotation one key or index below ``ann``, and the discriminator its field declares."""
    owner = _model_of(ann)
    if owner is not None and isinstance(part, str):
        field = _field(owner, part)
        if field is None:
            return None, None
        disc = field.discriminator if isinstance(field.discriminator, str) else None
        return field.annotation, disc
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (list, set, frozenset, Sequence) and isinstance(part, int) and args:
        return args[0], None
    if origin is tuple and isinstance(part, int) and args:
        return (args[0] if len(args) == 2 and args[1] is Ellipsis else args[min(part, len(args) - 1)]), None
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1], None
    return None, None


def _alias(field: FieldInfo, name: str) -> str:
    return field.validation_alias if isinstance(field.validation_alias, str) else field.alias or name


def _field(owner: type[BaseModel], key: str) -> FieldInfo | None:
    for name, field in owner.model_fields.items():
        if key == _alias(field, name):
            return field
    return owner.model_fields.get(key)


def _keys(owner: type[BaseModel]) -> list[str]:
    return [_alias(field, name) for name, field in owner.model_fields.items()]
