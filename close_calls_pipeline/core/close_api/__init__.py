"""Close REST API client (calls, Event Log, outcomes, users) used by the sync."""

from .client import CALL_FIELDS, DEFAULT_BASE_URL, CloseClient, Counters, WindowPage, format_ts
from .errors import CloseApiError, CloseAuthError, MaxSkipExceeded
from .pages import Unreadable

__all__ = [
    "CALL_FIELDS",
    "DEFAULT_BASE_URL",
    "CloseApiError",
    "CloseAuthError",
    "CloseClient",
    "Counters",
    "MaxSkipExceeded",
    "Unreadable",
    "WindowPage",
    "format_ts",
]
