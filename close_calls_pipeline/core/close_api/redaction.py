"""The credential: the Authorization header built from it, and keeping it out of every message.

The API key (HTTP Basic) or OAuth access token (Bearer) lives in the session's auth object, whose
repr is redacted; every text the client puts in an error or a log line goes through
`Redactor.redact`, which replaces the key, its base64 form and the whole header by ``***``.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import requests

_URL_RE = re.compile(r"(?:https?://|url: )\S+")


class Redactor:
    """Replaces each secret it knows by ``***``."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def describe_exc(self, exc: BaseException) -> str:
        """``ConnectionError (reason)`` on one line: no URL (it could carry a query string), no
        secret."""
        reason: Any = exc.args[0] if exc.args else exc
        reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError -> its cause
        text = " ".join(_URL_RE.sub("<url>", str(reason)).split())[:200]
        return self.redact(f"{type(exc).__name__} ({text})" if text else type(exc).__name__)

    def __repr__(self) -> str:
        return f"<Redactor of {len(self._secrets)} secrets>"


class HeaderAuth(requests.auth.AuthBase):
    """Sets a fixed Authorization header. Explicit auth also stops requests reading ~/.netrc."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._value
        return r

    def __repr__(self) -> str:
        return "<Authorization redacted>"


def authorization(
    api_key: str | None, access_token: str | None
) -> tuple[HeaderAuth, str, Redactor]:
    """The session's auth, its kind (``basic`` or ``bearer``) and a redactor of its secrets, from
    exactly one credential (surrounding whitespace stripped; control characters refused)."""
    api_key = (api_key or "").strip() or None
    access_token = (access_token or "").strip() or None
    for secret in (api_key, access_token):
        if secret is not None and not secret.isprintable():
            raise ValueError(
                "The Close API key / access token contains control characters; set "
                "CLOSE_API_KEY to the key exactly as Close shows it (Settings → Developer → "
                "API Keys)."
            )
    if bool(api_key) == bool(access_token):
        raise ValueError(
            "CloseClient needs exactly one credential: an API key (CLOSE_API_KEY, sent as "
            "HTTP Basic) or an OAuth access_token (sent as Bearer)."
        )
    if api_key:
        token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
        header = f"Basic {token}"
        return HeaderAuth(header), "basic", Redactor((api_key, token, header))
    header = f"Bearer {access_token}"
    return HeaderAuth(header), "bearer", Redactor((access_token, header))
