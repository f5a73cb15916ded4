"""Service URLs that carry credentials (``redis://user:password@host:port/db``), parsed without trusting
the password to be percent-encoded, and printed without it.

A password with ``#``, ``/``, ``?`` or ``@`` written raw breaks an ordinary URL parser: ``#`` starts a
fragment, ``/`` a path, and the password's tail becomes "the port" or "the path", which then shows up
in error messages and in masked output. Here the credentials are everything between ``://`` and the
last ``@`` that is followed by a plausible host; they are percent-encoded before any client sees the
URL. A ``%`` followed by two hex digits is read as an escape (an already encoded password works too).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode

from stream_app.errors import FloorwatchError

# host (name, IPv4 or [IPv6]) and optional port, then the end, a path or a query.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]*)(:\d*)?([/?].*)?$", re.S)
_SECRET_PARAMS = ("password", "username", "user")


class UrlError(FloorwatchError, ValueError):
    """A URL that cannot be read; the message never quotes the URL."""


def split_credentials(url: str) -> tuple[str, str | None, str]:
    """``(scheme, userinfo or None, rest after the @)``; the userinfo as written (raw or encoded)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise UrlError("not a URL (expected scheme://host...)")
    at = rest.rfind("@")
    while at >= 0:
        if _HOST.match(rest[at + 1 :]):
            return scheme, rest[:at], rest[at + 1 :]
        at = rest.rfind("@", 0, at)
    return scheme, None, rest


def normalize_url(url: str) -> str:
    """The URL with its username and password percent-encoded, so any URL parser reads them whole."""
    scheme, userinfo, rest = split_credentials(url)
    if userinfo is None:
        if not _HOST.match(rest) and scheme != "unix":
            # Say what is wrong without quoting it: the URL may hold a password.
            raise UrlError(f"{scheme}:// URL: cannot read host, port and database")
        return url
    user, sep, password = userinfo.partition(":")
    encoded = quote(unquote(user), safe="") + (":" + quote(unquote(password), safe="") if sep else "")
    return f"{scheme}://{encoded}@{rest}"


def mask_url(url: str) -> str:
    """The URL for display: credentials replaced by ``***``, password/username query values too."""
    try:
        scheme, userinfo, rest = split_credentials(url)
    except UrlError:
        return "***"
    base, qsep, query = rest.partition("?")
    base = base.split("#", 1)[0]
    if userinfo is not None:
        base = "***@" + base
    if qsep:
        pairs = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        base += "?" + urlencode(pairs, safe="*")
    return f"{scheme}://{base}"


def secrets_of(url: str) -> list[str]:
    """The password (raw and decoded) and secret query values in ``url``, to scrub from messages."""
    found: list[str] = []
    try:
        _, userinfo, rest = split_credentials(url)
    except UrlError:
        return found
    if userinfo and ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found += [password, unquote(password), quote(unquote(password), safe="")]
    query = rest.partition("?")[2]
    found += [v for k, v in parse_qsl(query) if k.lower() in _SECRET_PARAMS]
    return [s for s in dict.fromkeys(found) if s]
