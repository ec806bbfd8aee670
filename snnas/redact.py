"""The one redactor of storage URLs: every URL the project prints, logs or writes goes through here.

A URL is parsed with SQLAlchemy's own parser (the one that later opens the connection), so a
password holding ``/``, ``#`` or ``?`` is hidden whole, and password-like query parameters
(``?password=...``) are masked too. Where the URL does not parse, or parses to a host that holds an
``@`` (an unencoded ``@`` in the password), everything between ``://`` and the last ``@`` is hidden.
"""
from __future__ import annotations

import os
import re

from sqlalchemy.engine import make_url

MASK = "***"
SECRET_PARAMETERS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword", "secret", "token",
                               "access_key", "secret_key", "aws_secret_access_key", "api_key", "apikey"})
_SECRET_PARAMETER = re.compile(r"((?:^|[?&;])(?:" + "|".join(sorted(SECRET_PARAMETERS)) + r")=)[^&;#\s]*",
                               re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
MIN_SECRET_LENGTH = 3  # shorter explicit secrets would mangle ordinary words


def _fallback(text: str) -> str:
    scheme, rest = text.split("://", 1)
    at = rest.rfind("@")
    if at != -1:
        rest = MASK + rest[at:]
    return f"{scheme}://{_SECRET_PARAMETER.sub(lambda m: m.group(1) + MASK, rest)}"


def has_ambiguous_credentials(url: str) -> bool:
    """True when the user or password holds an unencoded ``@``: the parser would take part of the
    password for the host."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - any parse failure is "not ambiguous", just malformed
        return False
    return "@" in (parsed.host or "") or "@" in (parsed.username or "")


def redact_url(url: str | os.PathLike | None) -> str:
    """``url`` with its password and password-like query parameters replaced by ``***``; user, host,
    port, database and the rest of the text stay as written. A plain path comes back as it is."""
    if url is None:
        return ""
    text = os.fspath(url)
    if "://" not in text:
        return text
    try:
        parsed = make_url(text)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises several types for bad URLs
        return _fallback(text)
    if "@" in (parsed.host or "") or "@" in (parsed.username or ""):
        return _fallback(text)
    if parsed.password is not None:
        # SQLAlchemy reads scheme://USER:PASSWORD@ with USER up to the first ':' and PASSWORD up to the first '@'
        start = text.index(":", text.index("://") + 3) + 1
        text = text[:start] + MASK + text[text.index("@", start):]
    return _SECRET_PARAMETER.sub(lambda m: m.group(1) + MASK, text)


def redact_text(text: str, *secrets: str | None) -> str:
    """``text`` with every URL in it redacted and each given secret replaced by ``***``."""
    def one(match: re.Match) -> str:
        url = match.group(0)
        trail = len(url) - len(url.rstrip(".,;:)]}"))
        return redact_url(url[:len(url) - trail]) + url[len(url) - trail:]

    out = _URL_IN_TEXT.sub(one, str(text))
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            out = out.replace(secret, MASK)
    return out


__all__ = ["MASK", "SECRET_PARAMETERS", "redact_text", "redact_url"]
