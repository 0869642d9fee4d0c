"""Exceptions raised by the Close API client.

Messages never contain credentials: they name the endpoint path (never a full URL with a query
string), the HTTP status or the exception class, and the number of attempts made.
"""

from __future__ import annotations


class CloseApiError(RuntimeError):
    """A Close API request failed (a 4xx answer, or 5xx / network faults beyond the retry budget).

    Attributes: ``endpoint`` (path such as ``/activity/call/``), ``status`` (last HTTP status or
    None when the last attempt raised), ``attempts`` (HTTP attempts made for this request).
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts


class CloseAuthError(CloseApiError):
    """401/403: the credentials are missing, wrong, revoked or not allowed. Never retried."""


class MaxSkipExceeded(CloseApiError):
    """400 "max_skip = N": the offset is above the resource's cap. ``max_skip`` holds N if given."""

    def __init__(self, message: str, *, max_skip: int | None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.max_skip = max_skip
