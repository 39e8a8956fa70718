"""The runner's domain objects <-> generated messages: its status and capabilities for
RunnerService, what it announces to and receives from QueueService."""

from __future__ import annotations

from stablenew.contract.model import Job
from stablenew.contract.proto_mapping import fill_proto, from_proto
from stablenew.runner.domain import Capabilities, Lease, LeasedJob, RunnerInfo, RunnerStatus
from stablenew.v1 import job_pb2
from stablenew.v1 import queue_service_pb2 as queue_pb
from stablenew.v1 import runner_service_pb2 as pb


def status_to_proto(status: RunnerStatus) -> pb.RunnerStatus:
    message = pb.RunnerStatus(
        runner_id=status.runner_id, webui_state=pb.WebuiState.ValueType(status.webui_state),
        reason=status.reason, webui_url=status.webui_url, loaded_model=status.loaded_model,
        current_job_id=status.current_job_id, owns_webui_process=status.owns_process)
    if status.progress is not None:
        fill_proto(status.progress, message.progress)
    return message


def capabilities_to_proto(capabilities: Capabilities) -> pb.Capabilities:
    message = pb.Capabilities(
        models=[pb.ModelInfo(title=m.title, model_name=m.model_name, hash=m.hash)
                for m in capabilities.models],
        vaes=capabilities.vaes, samplers=capabilities.samplers,
        schedulers=capabilities.schedulers, upscalers=capabilities.upscalers,
        adetailer_models=capabilities.adetailer_models,
        scheduler_infos=[pb.SchedulerInfo(name=s.name, label=s.label, aliases=s.aliases)
                         for s in capabilities.scheduler_entries],
        latent_upscale_modes=capabilities.latent_upscale_modes)
    if capabilities.fetch_time is not None:
        message.fetch_time.FromDatetime(capabilities.fetch_time)
    return message


def runner_info_to_proto(info: RunnerInfo) -> queue_pb.RunnerInfo:
    """What the runner announces with every lease request: itself and what its WebUI offers."""
    message = queue_pb.RunnerInfo(runner_id=info.runner_id, host=info.host, models=info.models,
                                  loaded_model=info.loaded_model, address=info.address,
                                  webui_state=pb.WebuiState.ValueType(info.webui_state),
                                  stopped=info.stopped)
    if info.capabilities is not None:
        message.capabilities.CopyFrom(capabilities_to_proto(info.capabilities))
    return message


def leased_job_from_proto(runner_id: str, lease: queue_pb.Lease,
                          job: job_pb2.Job) -> LeasedJob:
    """A LeaseJob answer, held by `runner_id`."""
    return LeasedJob(
        lease=Lease(runner_id=runner_id, job_id=lease.job_id, lease_id=lease.lease_id,
                    attempt=lease.attempt),
        job=from_proto(Job, job))
