"""Small facts about network names, shared by the SMTP settings, the web app and the preview."""

from __future__ import annotations

import ipaddress

LOCAL_NAMES = ("localhost", "localhost.localdomain")


def is_loopback(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (with or without brackets): hosts where clear
    text never leaves the machine. What uvicorn reports as the client after applying trusted
    proxy headers is checked the same way."""
    if not host:
        return False
    if host.lower().rstrip(".") in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
