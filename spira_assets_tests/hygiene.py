"""Process-wide state a test must not leave behind.

Entering a ``DagsterInstance`` (``with instance:``, or the ``instance`` property of a
``build_schedule_context`` that is never exited) sets Dagster's current defs-state storage, a
context variable that outlives the test. It holds only a weak reference to its instance: once
that instance is garbage-collected, every later ``Definitions`` resolution in the process fails
with "Attempted to resolve undefined DagsterInstance weakref" -- in whichever test happens to
run next, depending on when the collector runs (it broke CI, not the developer's machine)."""

from __future__ import annotations

from dagster._core.storage.defs_state import base  # private: no public accessor exists


def current_defs_state_storage() -> object | None:
    return base.DefsStateStorage.get()


def leaked_defs_state_storage(before: object | None) -> str | None:
    """Why the current storage differs from ``before`` (None when it does not); resets it."""
    after = base.DefsStateStorage.get()
    if after is before:
        return None
    base._current_storage.set(None)  # back to the process default
    return (
        "the test left a DagsterInstance entered (Dagster's current defs-state storage is set); "
        "use build_schedule_context(...) / DagsterInstance as a context manager"
    )
