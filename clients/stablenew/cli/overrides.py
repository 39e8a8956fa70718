"""`--set key=value` arguments as pipeline-config fields.

A key is a dotted field path of `stablenew.v1.PipelineConfig` (`txt2img.steps`,
`stages.upscale_enabled`, `upscale.mode`); the value is read by that field's type: whole
numbers, numbers, `true`/`false` (also yes/no, on/off, 1/0), enum names (`extras` or
`UPSCALE_MODE_EXTRAS`), text as it is. A bad key or value is a usage error naming it, before
any call. The SDK turns the resulting mapping into the message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from stablenew.cli.output import CliError
from stablenew.v1 import pipeline_pb2

TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}
INTEGER_TYPES = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64,
                 FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64,
                 FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64}
FLOAT_TYPES = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def parse(assignments: Sequence[str]) -> dict[str, Any]:
    """{"txt2img.steps": 30, ...} from ["txt2img.steps=30", ...]; CliError for a bad one."""
    result: dict[str, Any] = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        key = key.strip()
        if not separator or not key:
            raise CliError(f"--set {assignment!r}: expected key=value, e.g. txt2img.steps=30")
        field = _field(key)
        result[key] = _value(field, key, value.strip())
    return result


def _field(key: str) -> FieldDescriptor:
    message: Descriptor = pipeline_pb2.PipelineConfig.DESCRIPTOR
    parts = key.split(".")
    for depth, part in enumerate(parts):
        field = message.fields_by_name.get(part)
        if field is None:
            known = ", ".join(sorted(message.fields_by_name))
            where = ".".join(parts[:depth]) or "the config"
            raise CliError(f"--set {key}: {where} has no field {part!r} (it has: {known})")
        last = depth == len(parts) - 1
        if field.is_repeated:
            raise CliError(f"--set {key}: {'.'.join(parts[:depth + 1])} is a list; "
                           "set it in the pack's .json instead")
        if field.message_type is not None:
            if last:
                raise CliError(f"--set {key}: a group of settings; name one of its fields "
                               f"({', '.join(sorted(field.message_type.fields_by_name))})")
            message = field.message_type
        elif not last:
            raise CliError(f"--set {key}: {'.'.join(parts[:depth + 1])} is not a group")
        else:
            return field
    raise CliError(f"--set {key}: empty key")


def _value(field: FieldDescriptor, key: str, value: str) -> Any:
    try:
        if field.type in INTEGER_TYPES:
            return int(value)
        if field.type in FLOAT_TYPES:
            return float(value)
    except ValueError:
        kind = "a whole number" if field.type in INTEGER_TYPES else "a number"
        raise CliError(f"--set {key}={value}: expected {kind}") from None
    if field.type == FieldDescriptor.TYPE_BOOL:
        if value.lower() in TRUE | FALSE:
            return value.lower() in TRUE
        raise CliError(f"--set {key}={value}: expected true or false")
    if field.enum_type is not None:
        return _enum(field.enum_type, key, value)
    return value


def _enum(enum: EnumDescriptor, key: str, value: str) -> str:
    """The full value name (UPSCALE_MODE_EXTRAS) for itself or its short form (extras)."""
    # Enum values carry their enum's name as a prefix (UpscaleMode -> UPSCALE_MODE_).
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    names = [v.name for v in enum.values if v.number != 0]
    wanted = value.upper().replace("-", "_")
    for full in names:
        if wanted in (full, full.removeprefix(prefix)):
            return full
    short = ", ".join(full.removeprefix(prefix).lower() for full in names)
    raise CliError(f"--set {key}={value}: expected one of {short}")
