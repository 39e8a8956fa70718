"""What only the asyncio client has: `async with`, `async for`, an AsyncPreview, coroutine
callbacks, and channels opened inside the running loop (the rest of its behaviour is checked
by every test that takes `client`)."""

from __future__ import annotations

import asyncio

import pytest

from stablenew.sdk import AsyncClient, AsyncPreview, JobProgress, JobState, UnavailableError
from tests.queue.processes import free_port
from tests.sdk.harness import PACK_ID, Stack


def test_async_with_and_async_for(stack: Stack) -> None:
    async def scenario() -> None:
        async with AsyncClient(env={}, bundle_address=stack.bundle.address,
                               queue_address=stack.queue.address) as client:
            packs = [pack.pack_id async for pack in client.packs.list()]
            assert PACK_ID in packs
            draft = await client.drafts.create()
            draft = await client.drafts.add_pack(draft.draft_id, PACK_ID, rows=[0, 1])
            preview = await client.drafts.preview(draft.draft_id, page_size=1)
            assert isinstance(preview, AsyncPreview)
            assert [job.index async for job in preview.jobs] == [0, 1]
            stack.admin.faults(step_seconds=0.25)
            progress: list[JobProgress] = []

            async def on_progress(update: JobProgress) -> None:
                await asyncio.sleep(0)
                progress.append(update)
            try:
                job = await client.drafts.enqueue(draft.draft_id)
                done = await client.wait(job.job_id, on_progress=on_progress, timeout=60)
            finally:
                stack.admin.faults(step_seconds=0.002)
            assert done.state == JobState.COMPLETED
            assert progress

    asyncio.run(scenario())


def test_a_client_made_outside_a_loop(stack: Stack) -> None:
    """A client made outside a loop works in the loop that first uses it."""
    client = AsyncClient(env={}, queue_address=stack.queue.address)

    async def state() -> bool:
        paused = (await client.queue.state()).paused
        await client.close()
        return paused

    assert asyncio.run(state()) is False


def test_a_watch_is_closed_by_its_reader(stack: Stack) -> None:
    async def scenario() -> None:
        async with AsyncClient(env={}, queue_address=stack.queue.address) as client:
            events = client.watch(after_sequence=0)
            first = await anext(events)
            assert first.sequence >= 1
            await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_unreachable(stack: Stack) -> None:
    async def scenario() -> None:
        async with AsyncClient(env={}, history_address=f"127.0.0.1:{free_port()}") as client:
            with pytest.raises(UnavailableError) as caught:
                await client.history.get("x")
            assert caught.value.reason == ""

    asyncio.run(scenario())
