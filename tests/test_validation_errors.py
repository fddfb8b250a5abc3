"""The one translator of pydantic errors: key paths as written, what is wrong, what is allowed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sse_sim.validation_errors import (
    FieldProblem,
    describe_error,
    describe_errors,
    describe_value,
    format_path,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Exp(_Strict):
    kind: Literal["exp"]
    mean_: float = Field(gt=0, alias="mean")


class Const(_Strict):
    kind: Literal["const"]
    value: float = Field(ge=0, le=10)


class Window(_Strict):
    clients: Literal["all"] | list[Annotated[int, Field(ge=0)]] = "all"
    node: int | Literal["all"] = 0


class Root(_Strict):
    dists: list[Annotated[Exp | Const, Field(discriminator="kind")]] = []
    window: Window | None = None
    name: str = ""


def problems(data: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        Root.model_validate(data)
    return [str(p) for p in describe_errors(info.value, Root)]


def test_unknown_keys_list_the_allowed_ones_by_alias_and_drop_union_tags():
    assert problems({"dists": [{"kind": "exp", "mean": 1, "x": 2}]}) == [
        "$.dists[0].x: unknown key (allowed: kind, mean)"
    ]


def test_discriminated_union_tags():
    assert problems({"dists": [{"kind": "gamma"}, {"mean": 1}, 3]}) == [
        "$.dists[0].kind: expected one of 'exp', 'const', got string 'gamma'",
        "$.dists[1].kind: required field is missing (expected one of 'exp', 'const')",
        "$.dists[2]: expected a JSON object with a kind key ('exp', 'const'), got integer 3",
    ]


def test_bounds_types_and_lists():
    assert problems({"dists": [{"kind": "const", "value": 11}, {"kind": "exp", "mean": 0}], "name": 3}) == [
        "$.dists[0].value: expected a number of at most 10, got integer 11",
        "$.dists[1].mean: expected a number greater than 0, got integer 0",
        "$.name: expected a valid string, got integer 3",
    ]


def test_plain_union_members_merge_unless_one_matched_the_shape():
    assert problems({"window": {"clients": "some", "node": "x"}}) == [
        "$.window.clients: expected 'all' or a valid list, got string 'some'",
        "$.window.node: expected a valid integer or 'all', got string 'x'",
    ]
    assert problems({"window": {"clients": [1, -1]}}) == [
        "$.window.clients[1]: expected a number of at least 0, got integer -1"
    ]


def test_one_error_and_no_model():
    error = {"type": "missing", "loc": ("a", 0, "b"), "msg": "Field required", "input": {}}
    assert describe_error(error) == FieldProblem(("a", 0, "b"), "required field is missing")
    custom = {"type": "sse_id", "loc": ("brand_id",), "msg": "expected an integer in 1..9, got integer 0", "input": 0}
    problem = describe_error(custom)
    assert problem.allowed == "an integer in 1..9" and problem.message == custom["msg"]
    value = {"type": "value_error", "loc": (), "msg": "Value error, end_s must be after start_s", "input": {}}
    assert describe_error(value).message == "end_s must be after start_s"


def test_paths_and_values():
    assert format_path(()) == "$" and format_path((), "") == "(top level)"
    assert format_path(("gateway", "buffer_size"), "") == "gateway.buffer_size"
    assert format_path(("a b", 0), "") == '["a b"][0]'
    assert describe_value("x" * 100).endswith("...") and describe_value({"a": 1}) == "object with 1 field"


@pytest.mark.parametrize("value", [None, True, 0, -1.5, "x" * 100, [1], {}, b"x"])
def test_values_read_as_the_event_models_say_them(value):
    from sse_sim.events.models import describe_json

    assert describe_value(value) == describe_json(value)
