"""What the settings classes of every part share."""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

T = TypeVar("T")


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# a list setting written `a,b,c` in the environment (pydantic-settings would otherwise expect JSON)
CommaList = Annotated[list[T], NoDecode, BeforeValidator(_split_commas)]
