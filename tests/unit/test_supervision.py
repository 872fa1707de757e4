"""A task that ends is reported at once with why; the reason for a self-reset survives the reset, once."""

import asyncio

from portable import scratch

from firmware.supervision import guarded, note_reset, reason, take_reset_note


def _run(coro):
    return asyncio.run(coro)


def test_a_task_dying_of_memory_error_is_reported_with_its_name():
    ended = []

    async def body():
        await asyncio.sleep(0)
        raise MemoryError("memory allocation failed, allocating 1024 bytes")

    _run(guarded("meter", body(), lambda name, exc: ended.append((name, reason(exc)))))
    assert ended == [("meter", "MemoryError: memory allocation failed, allocating 1024 bytes")]


def test_a_task_that_returns_is_reported_too():
    ended = []

    async def body():
        await asyncio.sleep(0)

    _run(guarded("gnss", body(), lambda name, exc: ended.append((name, reason(exc)))))
    assert ended == [("gnss", "returned")]


def test_cancellation_is_a_normal_stop_not_a_death():
    ended = []

    async def forever():
        while True:
            await asyncio.sleep(1)

    async def main():
        task = asyncio.create_task(guarded("uplink", forever(), lambda name, exc: ended.append(name)))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    _run(main())
    assert ended == []


def test_reason_without_a_message_is_the_class_alone():
    assert reason(MemoryError()) == "MemoryError"
    assert reason(ValueError("bad")) == "ValueError: bad"


def test_reset_note_is_kept_across_the_reset_and_reported_once():
    path = scratch("supervision") + "/reset_why"
    assert take_reset_note(path) is None
    note_reset(path, "task meter died: MemoryError")
    assert take_reset_note(path) == "task meter died: MemoryError"
    assert take_reset_note(path) is None
    note_reset(path, "x" * 500)
    assert len(take_reset_note(path)) == 120


def test_a_failing_flash_does_not_stop_the_reset():
    note_reset(scratch("supervision-ro") + "/no/such/dir/reset_why", "stuck: meter")  # no exception
