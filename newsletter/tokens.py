"""Signed tokens for the links in every message: unsubscribe and preferences (never expire, so a
year-old email still works) and confirm (expires). Forged or altered tokens fail verification.

The key comes from the environment variable named by ``newsletter.secret_key_env``; when it is not
set, a random key is generated once and kept in the store, so links stay valid across runs.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer

from newsletter.config import Config
from newsletter.store import Store
from newsletter.store.meta import get_value, set_value

_SECRET_META_KEY = "secret_key"


def secret_key(config: Config, store: Store) -> str:
    """The signing key: from the environment if set, else the one kept in the store."""
    from_env = os.environ.get(config["newsletter.secret_key_env"], "")
    if from_env:
        return from_env
    with store.atomic() as conn:
        kept = get_value(conn, _SECRET_META_KEY)
        if kept:
            return kept
        key = secrets.token_urlsafe(32)
        set_value(conn, _SECRET_META_KEY, key)
        return key


class Signer:
    """Makes and checks the tokens. Salts keep an unsubscribe token from working as a confirm one."""

    def __init__(self, key: str) -> None:
        self._unsubscribe = URLSafeSerializer(key, salt="unsubscribe")
        self._confirm = URLSafeTimedSerializer(key, salt="confirm")
        self._preferences = URLSafeSerializer(key, salt="preferences")

    def unsubscribe_token(self, email: str) -> str:
        return self._unsubscribe.dumps(email.lower())

    def verify_unsubscribe(self, token: str) -> str | None:
        """The address the token was made for, or None if forged or altered."""
        return _address(self._unsubscribe, token)

    def preferences_token(self, email: str) -> str:
        """For the preferences page: its own salt, so it can never unsubscribe or confirm."""
        return self._preferences.dumps(email.lower())

    def verify_preferences(self, token: str) -> str | None:
        """The address whose preferences the token opens, or None if forged or altered."""
        return _address(self._preferences, token)

    def confirm_token(self, email: str) -> str:
        return self._confirm.dumps(email.lower())

    def verify_confirm(self, token: str, max_age_s: int = 7 * 24 * 3600) -> str | None:
        """The address to confirm, or None if forged, altered or older than ``max_age_s``."""
        return _address(self._confirm, token, max_age=max_age_s)


def _address(serializer: Any, token: str, **loads: Any) -> str | None:
    """The address a token holds, or None if it is forged, altered, expired or not an address.
    (``SignatureExpired`` is a ``BadSignature``.)"""
    try:
        value = serializer.loads(token, **loads)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None
