"""Layer 0: credentials out of text before it is printed, logged or stored.

Rule: imports the standard library only. Every message that may carry a URL (a git
source, a target, a state store, an error a library raised about one of them) passes
through `masked` before a user or a log sees it; URLs that are recorded (plans, runs)
go through `without_credentials`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# Only to find where a URL starts and ends in free text; urllib.parse reads each one.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


# Schemes whose user name alone is a role, never a token (the password goes in
# PGPASSWORD); elsewhere a user name alone is often the token (https://TOKEN@host).
_NAMED_USERS = frozenset({"postgres", "postgresql"})


def _userinfo_replaced(url: str, replacement: str | None) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced [ in the host, say: hide everything before the @
        head, at, tail = url.partition("@")
        if not at:
            return url
        scheme, sep, _ = head.partition("://")
        return f"{scheme}{sep}{replacement + '@' if replacement else ''}{tail}"
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if replacement is None:
        netloc = host
    elif colon and user:
        netloc = f"{user}:{replacement}@{host}"  # the user helps; the password never shows
    elif parts.scheme.lower() in _NAMED_USERS:
        return url
    else:
        netloc = f"{replacement}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def masked(text: str) -> str:
    """`text` with the user and password of every URL in it replaced by ***."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: _userinfo_replaced(m.group(0), MASK), text)


def without_credentials(url: str) -> str:
    """`url` with no user or password at all: what a plan or a run records."""
    return _userinfo_replaced(url, None)


def has_credentials(url: str) -> bool:
    return without_credentials(url) != url
