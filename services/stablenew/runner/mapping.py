"""Runner status and capabilities -> generated messages."""

from __future__ import annotations

from stablenew.contract.proto_mapping import fill_proto
from stablenew.runner.status import Capabilities, RunnerState
from stablenew.v1 import runner_service_pb2 as pb


def status_to_proto(state: RunnerState) -> pb.RunnerStatus:
    webui_state, reason = state.webui
    message = pb.RunnerStatus(
        runner_id=state.runner_id, webui_state=pb.WebuiState.ValueType(webui_state),
        reason=reason, webui_url=state.webui_url, loaded_model=state.loaded_model_name,
        current_job_id=state.current_job_id, owns_webui_process=state.owns_process)
    progress = state.progress
    if progress is not None:
        fill_proto(progress, message.progress)
    return message


def capabilities_to_proto(capabilities: Capabilities) -> pb.Capabilities:
    message = pb.Capabilities(
        models=[pb.ModelInfo(title=m.title, model_name=m.model_name, hash=m.hash)
                for m in capabilities.models],
        vaes=capabilities.vaes, samplers=capabilities.samplers,
        schedulers=capabilities.schedulers, upscalers=capabilities.upscalers,
        adetailer_models=capabilities.adetailer_models)
    if capabilities.fetch_time is not None:
        message.fetch_time.FromDatetime(capabilities.fetch_time)
    return message
