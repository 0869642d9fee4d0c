"""Close REST API client (calls, Event Log, outcomes, users) used by the sync.

`client` holds the endpoints; `transport` the session, pacing, retries and deadline (with
`watchdog` and `ratelimit`); `answers` what an HTTP answer means; `redaction` the credential and
what keeps it out of messages; `pages` the reading of pages that do not decode.
"""

from .client import CALL_FIELDS, DEFAULT_BASE_URL, CloseClient, WindowPage, format_ts
from .errors import CloseApiError, CloseAuthError, MaxSkipExceeded
from .pages import Unreadable
from .transport import Counters

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
