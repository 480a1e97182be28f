"""docs/config.md stays true to ncsn.config both ways: every field of Config has a row (with its
allowed choices and its default), and no table row names a field that does not exist."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import pytest
import yaml

from ncsn.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def _fields(cls: type, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``section.field`` (recursively) → (type, default) of every leaf field of ``cls``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out |= _fields(tp, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out[prefix + f.name] = (tp, default)
    return out


def _choices(tp: Any) -> list:
    """The values of every Literal inside ``tp`` (unions and lists included)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return list(typing.get_args(tp))
    if origin in (Union, types.UnionType, list):
        return [c for arg in typing.get_args(tp) for c in _choices(arg)]
    return []


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


FIELDS = _fields(Config)
SECTIONS = sorted({name.partition(".")[0] for name in FIELDS if "." in name})
ROWS = [line for line in DOC.read_text().splitlines() if line.lstrip().startswith("|")]
FIELD_ROWS: dict[str, list[str]] = {}
for _line in ROWS:
    _first = _cells(_line)[0]
    if re.fullmatch(r"`[\w.]+`", _first):
        FIELD_ROWS.setdefault(_first.strip("`"), []).append(_line)
# a section.field reference anywhere in a row (not part of a path, module or file name)
REFERENCE = re.compile(rf"(?<![\w./-])(?:{'|'.join(SECTIONS)})\.[A-Za-z_]\w*")


def test_every_field_has_exactly_one_row():
    missing = sorted(set(FIELDS) - set(FIELD_ROWS))
    assert not missing, f"docs/config.md lacks a row for: {', '.join(missing)}"
    doubled = sorted(name for name, rows in FIELD_ROWS.items() if len(rows) > 1)
    assert not doubled, f"docs/config.md has several rows for: {', '.join(doubled)}"


def test_no_row_names_an_unknown_field():
    unknown = sorted(set(FIELD_ROWS) - set(FIELDS))
    unknown += sorted({m for line in ROWS for m in REFERENCE.findall(line)} - set(FIELDS))
    assert not unknown, f"docs/config.md names fields Config does not have: {', '.join(unknown)}"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_row_states_the_choices_and_the_default(name):
    tp, default = FIELDS[name]
    (row,) = FIELD_ROWS[name]
    cells = _cells(row)
    assert len(cells) == 4, f"{name}: expected 4 cells (field, type, default, meaning): {row}"
    for choice in _choices(tp):
        assert f"`{choice}`" in row, f"{name}: the allowed value `{choice}` is not in its row"
    written = cells[2]
    assert re.fullmatch(r"`[^`]*`", written), f"{name}: default {written!r} not in backticks"
    assert yaml.safe_load(written.strip("`")) == default, (
        f"{name}: docs/config.md says the default is {written}, config.py has {default!r}"
    )
