"""A service whose RPCs are not built yet answers UNIMPLEMENTED with a message naming what is
missing, never a made-up result. Generated from the proto descriptor, so every RPC is covered and
reflection lists the real contract."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from stablenew.contract.errors import not_implemented
from stablenew.runtime.server import ServiceSpec


def _handler(method: MethodDescriptor, missing: str) -> grpc.RpcMethodHandler[Any, Any]:
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    text = f"{method.containing_service.name}.{method.name} is not implemented yet: {missing}"

    def refuse(_request: Any, _context: grpc.ServicerContext) -> Any:
        raise not_implemented(text)

    make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
            else grpc.unary_unary_rpc_method_handler)
    return make(refuse, request_class.FromString, response_class.SerializeToString)


def pending_service(service: ServiceDescriptor, missing: str) -> grpc.GenericRpcHandler[Any, Any]:
    """Handlers for every RPC of `service`, each refusing with UNIMPLEMENTED."""
    handlers = {method.name: _handler(method, missing) for method in service.methods}
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def pending_spec(service_name: str, service: ServiceDescriptor, missing: str) -> ServiceSpec:
    """A ServiceSpec serving `service` with every RPC pending."""
    handler = pending_service(service, missing)
    return ServiceSpec(
        name=service_name,
        proto_services=[service.full_name],
        register=lambda server: server.add_generic_rpc_handlers((handler,)),
    )
