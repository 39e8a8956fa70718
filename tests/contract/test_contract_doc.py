"""docs/CONTRACT.md cannot drift from the code: its field and enum tables are the protos' hashed
fields in encoding order, and its worked example is the vector it names."""

from __future__ import annotations

import json
import re
from enum import IntEnum
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from stablenew.contract.config_hash import ENCODED_AS_NUMBER, ENCODING_VERSION, NOT_HASHED_OF
from stablenew.contract.model import ResizeMode, StageType, UpscaleMode
from stablenew.v1 import pipeline_pb2
from tests.contract.make_vectors import VECTORS_PATH

CONTRACT = (Path(__file__).parents[2] / "docs" / "CONTRACT.md").read_text(encoding="utf-8")
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

SCALARS = {FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BOOL: "bool",
           FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_INT64: "int64",
           FieldDescriptor.TYPE_DOUBLE: "double"}


def _doc_tables() -> dict[str, list[tuple[str, ...]]]:
    """Each `#### \\`Name\\`` section of the document with the rows of its table (cells without
    backticks, header and rule rows left out)."""
    tables: dict[str, list[tuple[str, ...]]] = {}
    for section in re.split(r"^#### ", CONTRACT, flags=re.MULTILINE)[1:]:
        heading, _, body = section.partition("\n")
        rows = [tuple(cell.strip().strip("`") for cell in line.strip("|").split("|"))
                for line in body.splitlines() if line.startswith("| ")]
        tables[heading.strip("` ")] = rows[1:]
    return tables


def _proto_type(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        name: str = field.message_type.name
    elif field.enum_type is not None:
        name = field.enum_type.name
    else:
        # A new kind of field (float, uint64, bytes, map...) needs a rule in CONTRACT.md first.
        name = SCALARS[field.type]
    return f"repeated {name}" if field.is_repeated else name


def _hashed_types() -> tuple[dict[str, Descriptor], dict[str, EnumDescriptor]]:
    """Every message and enum the encoding reaches from NormalizedJob's hashed fields."""
    messages: dict[str, Descriptor] = {}
    enums: dict[str, EnumDescriptor] = {}
    pending = [pipeline_pb2.NormalizedJob.DESCRIPTOR]
    while pending:
        message = pending.pop()
        messages[message.name] = message
        for field in _hashed_fields(message):
            if field.message_type is not None and field.message_type.name not in messages:
                pending.append(field.message_type)
            if field.enum_type is not None:
                enums[field.enum_type.name] = field.enum_type
    return messages, enums


def _hashed_fields(message: Descriptor) -> list[FieldDescriptor]:
    skipped = next((fields for twin, fields in NOT_HASHED_OF.items()
                    if twin.__name__ == message.name), frozenset())
    return sorted((field for field in message.fields if field.name not in skipped),
                  key=lambda field: field.name)


def test_field_tables_are_the_hashed_fields_in_encoding_order() -> None:
    tables = _doc_tables()
    messages, _ = _hashed_types()

    for name, message in messages.items():
        expected = [(field.name, _proto_type(field)) for field in _hashed_fields(message)]
        assert tables.get(name) == expected, f"CONTRACT.md's table of {name}"


def _written_as(member: IntEnum) -> str:
    return str(int(member)) if type(member) in ENCODED_AS_NUMBER else f'"{member.name}"'


def test_enum_tables_give_every_value_and_the_name_the_encoding_writes() -> None:
    tables = _doc_tables()
    _, enums = _hashed_types()
    twins = {"StageType": StageType, "UpscaleMode": UpscaleMode, "ResizeMode": ResizeMode}

    assert set(enums) == set(twins)
    for name, enum in enums.items():
        expected = [(str(value.number), value.name, _written_as(twins[name](value.number)))
                    for value in enum.values]
        assert tables.get(name) == expected, f"CONTRACT.md's table of {name}"


def test_the_documented_tables_are_no_more_than_the_hashed_types() -> None:
    messages, enums = _hashed_types()
    documented = set(_doc_tables())

    assert documented == set(messages) | set(enums)


def test_the_worked_example_is_its_vector() -> None:
    example = next(v for v in VECTORS["jobs"] if v["name"] == "txt2img-basic")
    alone = next(b for b in VECTORS["bundles"] if b["name"] == "one-entry")

    assert "(vector `txt2img-basic`)" in CONTRACT
    assert f"\n{example['canonical']}\n" in CONTRACT
    assert f"config hash `{example['config_hash']}`" in CONTRACT
    assert alone["entries"] == ["txt2img-basic"]
    assert f"`{alone['bundle_hash']}`" in CONTRACT


def test_the_document_names_the_encoding_version() -> None:
    assert f'{{"encoding":"{ENCODING_VERSION}","job":<the job object>}}' in CONTRACT
