"""The session under every view: runs, sources and what can be done with them (no UI)."""

from .runs import RunRecord
from .session import OWN_LOOP_NAME, Session
from .sources import LiveSource, LogSource, RunSource, Source, SourceStatus

__all__ = [
    "OWN_LOOP_NAME",
    "LiveSource",
    "LogSource",
    "RunRecord",
    "RunSource",
    "Session",
    "Source",
    "SourceStatus",
]
