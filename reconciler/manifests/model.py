"""The base of every manifest model, and the field types they share.

Every model is strict (no silent coercion of `"3"` to 3 or `yes` to true), frozen, and
forbids unknown fields. Fields are written in camelCase, as the platforms' JSON is, and
also accepted in snake_case, as pachctl accepts them; both spellings of one field in one
mapping is an error. Dumps use camelCase.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import PydanticCustomError

from reconciler.manifests.values import Value

__all__ = ["Model", "Value", "name_rule"]


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and "_" in key:
                    camel = to_camel(key)
                    if camel != key and camel in data:
                        raise PydanticCustomError(
                            "two_spellings",
                            "'{snake}' and '{camel}' are the same field, given twice",
                            {"snake": key, "camel": camel},
                        )
        return data

    def to_data(self) -> dict[str, Any]:
        """The manifest form: camelCase, defaults left out, references written back."""
        return self.model_dump(
            mode="json", exclude_unset=True, by_alias=True, context={"expressions": True}
        )

    def spec_data(self) -> dict[str, Any]:
        """As `to_data`, but sensitive values stay `Sensitive` objects (for providers)."""
        return self.model_dump(
            mode="python", exclude_unset=True, by_alias=True, context={"keep_sensitive": True}
        )


def field_names(model: type[BaseModel]) -> list[str]:
    """The documented (camelCase) names of a model's fields."""
    return [f.alias or name for name, f in model.model_fields.items()]


def snake(name: str) -> str:
    return to_snake(name)


def name_rule(pattern: str, max_len: int, what: str, rule: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value) or len(value) > max_len:
            raise PydanticCustomError(
                "invalid_name",
                "'{value}' is not a valid {what}: {rule}",
                {"value": value, "what": what, "rule": rule},
            )
        return value

    return AfterValidator(check)
