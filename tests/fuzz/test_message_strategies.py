"""The fuzz strategies draw every request message of the contract, and reach the edges."""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stablenew.v1 import pipeline_pb2
from tests.fuzz.message_strategies import message_strategy
from tests.fuzz.rpc_fuzz import SERVICES

INPUTS = sorted({method.input_type.full_name: method.input_type
                 for service in SERVICES.values() for method in service.methods}.items())


def _request_types() -> st.SearchStrategy[Descriptor]:
    return st.sampled_from([descriptor for _, descriptor in INPUTS])


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_every_request_type_draws_messages_that_survive_the_wire(data: st.DataObject) -> None:
    descriptor = data.draw(_request_types())
    message = data.draw(message_strategy(descriptor))
    assert isinstance(message, Message)
    assert type(message).FromString(message.SerializeToString()) == message


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(message_strategy(pipeline_pb2.Img2ImgConfig.DESCRIPTOR))
def test_numbers_reach_their_limits(message: Message) -> None:
    message.SerializeToString()  # every drawn value fits its field type


def test_unknown_enum_numbers_and_huge_strings_are_drawn() -> None:
    seen_unknown_enum, seen_huge = False, False

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(message_strategy(pipeline_pb2.UpscaleConfig.DESCRIPTOR))
    def look(message: Message) -> None:
        nonlocal seen_unknown_enum, seen_huge
        fields = {field.name: value for field, value in message.ListFields()}
        seen_unknown_enum |= fields.get("mode", 0) not in (0, 1, 2)
        seen_huge |= len(str(fields.get("upscaler", ""))) >= 300

    look()
    assert seen_unknown_enum and seen_huge
