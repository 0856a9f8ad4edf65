"""Log-in sessions: an access token is exchanged once for a random session secret bound to the account.

The browser keeps the secret in an HttpOnly, SameSite=Strict cookie (:data:`SESSION_COOKIE`), API clients
send it in the :data:`SESSION_HEADER` header; every call resolves it to the account again. The database
keeps only its SHA-256, so a leaked database does not hand out sessions, and any app process (several
workers, or one restarted after a crash) resolves the same session. Failed log-ins are rate-limited per
client address (:data:`MAX_FAILED_LOGINS` per :data:`FAILED_LOGIN_WINDOW`), counted in the audit trail so
that every worker sees the same count.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import timedelta

from sqlalchemy import select, update

from ..auth import Actor, token_holder
from ..errors import AccessDenied
from ..models import AuditEvent, Reader, ReaderSession, as_utc, utcnow
from .base import ServiceBase

SESSION_COOKIE = "rs_session"
SESSION_HEADER = "x-reader-session"
SESSION_LIFETIME = timedelta(hours=12)
MAX_FAILED_LOGINS = 20
FAILED_LOGIN_WINDOW = timedelta(minutes=1)
RESOLVED_TTL_S = 5.0
"""Seconds a resolved session is trusted without asking the database again (a log-out or a deactivated
account takes effect on every worker within this time)."""


def secret_hash(secret: str) -> str:
    """Hex SHA-256 of a session secret (secrets are 256-bit random: no salt or slow hash is needed)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Sessions(ServiceBase):
    """Log in with an access token, resolve a session secret, log out."""

    def login(self, token: str, client: str = "") -> tuple[Actor, str]:
        """Exchange an access token for ``(actor, session secret)``; the secret is returned only here.

        ``client`` (the caller's address) keys the failed-log-in limit. Raises :class:`AccessDenied` for a
        bad token, or once ``client`` failed :data:`MAX_FAILED_LOGINS` times within a minute.
        """
        since = utcnow() - FAILED_LOGIN_WINDOW
        with self.db.read() as s:
            recent = s.scalars(
                select(AuditEvent.detail).where(
                    AuditEvent.action == "login_failed", AuditEvent.created_at >= since
                )
            )
            if sum(1 for d in recent if (d or {}).get("client") == client) >= MAX_FAILED_LOGINS:
                raise AccessDenied("Too many failed log-ins from here; wait a minute and try again.")
            reader = token_holder(s, token)
            actor = None if reader is None else Actor(reader.id, reader.role, reader.display_name)
        if actor is None:
            self._audit(None, None, "login_failed", {"client": client})
            raise AccessDenied("This access token is not valid.")
        secret = secrets.token_urlsafe(32)
        with self.db.write() as s:
            s.add(
                ReaderSession(
                    secret_hash=secret_hash(secret),
                    reader_id=actor.reader_id,
                    expires_at=utcnow() + SESSION_LIFETIME,
                )
            )
            s.add(AuditEvent(actor_id=actor.reader_id, action="login", detail={"client": client}))
        return actor, secret

    def session_actor(self, secret: str | None) -> Actor:
        """The account of a live session (not expired, not logged out, account active).

        Raises :class:`AccessDenied` ("Please log in ...") otherwise. Resolutions are cached for
        :data:`RESOLVED_TTL_S` seconds per process.
        """
        if not secret or len(secret) > 200:
            raise AccessDenied("Please log in with your access token.")
        digest = secret_hash(secret)
        cached = self._sessions.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        with self.db.read() as s:
            row = s.execute(
                select(ReaderSession.expires_at, ReaderSession.revoked, Reader)
                .join(Reader, Reader.id == ReaderSession.reader_id)
                .where(ReaderSession.secret_hash == digest)
            ).first()
            if row is None or row.revoked or as_utc(row.expires_at) <= utcnow() or not row.Reader.active:
                raise AccessDenied("Please log in with your access token (your session has ended).")
            actor = Actor(row.Reader.id, row.Reader.role, row.Reader.display_name)
        self._sessions.put(digest, (actor, time.monotonic() + RESOLVED_TTL_S))
        return actor

    def logout(self, secret: str | None) -> None:
        """End a session (nothing happens for an unknown secret)."""
        if not secret:
            return
        digest = secret_hash(secret)
        self._sessions.pop(digest)
        with self.db.write() as s:
            s.execute(update(ReaderSession).where(ReaderSession.secret_hash == digest).values(revoked=True))
