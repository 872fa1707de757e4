"""Supervision helpers: a task's death is reported at once, and why the terminal reset survives the reset.

The terminal's tasks never end; one that does has died. Without `guarded` an
exception in a task (a MemoryError in a fragmented heap, a bug) is only printed
by asyncio, and the dead task is noticed when its watchdog allowance runs out,
up to 15 minutes later, while no readings are taken.

A reset the terminal asks for itself (a dead or stuck task, the modem ladder,
a crash) is noted on flash first, so the reboot event after it can say why:
`machine.reset_cause()` only says "soft" or "wdt".
"""

import asyncio
import os

_WHY_MAX = 120  # characters of the reason kept: enough for "task meter died: MemoryError: ..."


def reason(exc):
    """A short description of why a task ended: the exception's class and message ("returned" for None)."""
    if exc is None:
        return "returned"
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a MemoryError while formatting: the class alone still says what happened
        text = ""
    name = type(exc).__name__
    return "%s: %s" % (name, text) if text else name


async def guarded(name, coro, on_end):
    """Run `coro` (a task body that loops forever); if it ends, by return or exception, call on_end(name, exc).

    Cancellation is the normal way a task is stopped and is passed through.
    """
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - any end of a forever-task is a death to report
        on_end(name, e)
        return
    on_end(name, None)


def note_reset(path, why):
    """Keep `why` on flash for the next boot. Best effort: a failing flash must not stop the reset."""
    try:
        with open(path, "w") as f:
            f.write(why[:_WHY_MAX])
    except Exception:  # noqa: BLE001 - OSError, or MemoryError in the very state that caused the reset
        pass


def take_reset_note(path):
    """The reason noted before the last reset, or None; the note is removed so it is reported once."""
    try:
        with open(path) as f:
            why = f.read(_WHY_MAX)
    except OSError:
        return None
    try:
        os.remove(path)
    except OSError:
        pass
    return why or None
