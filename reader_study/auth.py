"""Who may do what: access tokens, the :class:`Actor` of a call, and the checks every service call makes.

A token is shown once when an account is created; the database keeps its first :data:`TOKEN_ID_LENGTH`
characters (to find the account) and a salted scrypt hash (to verify it). Every call re-reads the actor's
role from the database: a forged :class:`Actor` gains nothing, and only the :data:`SYSTEM` object itself
(trusted local code) skips the checks.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from vce_core.errors import VCEInputError

from .errors import AccessDenied
from .models import Enrollment, Reader, Study

TOKEN_ID_LENGTH = 8
"""Leading characters of a token stored in clear to find its account."""
MIN_TOKEN_LENGTH = 10
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_token(token: str, salt: bytes) -> bytes:
    """Salted scrypt hash of an access token (32 bytes)."""
    return hashlib.scrypt(token.encode("utf-8"), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)


def new_token() -> str:
    """A fresh random access token (~256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Actor:
    """Who calls: a reader/admin id from :meth:`ReaderStudyService.authenticate`, or :data:`SYSTEM`."""

    reader_id: int | None
    role: str
    display_name: str


SYSTEM = Actor(reader_id=None, role="admin", display_name="system")
"""Trusted local code (CLI, demo builder). Only the identical object is accepted, never a copy."""


def token_holder(s: Session, token: str) -> Reader | None:
    """The active account whose token is ``token`` (compared in constant time), or None."""
    token = (token or "").strip()
    if len(token) < MIN_TOKEN_LENGTH:
        return None
    for reader in s.scalars(select(Reader).where(Reader.token_id == token[:TOKEN_ID_LENGTH])):
        if reader.active and hmac.compare_digest(hash_token(token, reader.token_salt), reader.token_hash):
            return reader
    return None


def new_account(s: Session, name: str, role: str, token: str | None = None) -> tuple[Reader, str]:
    """Add an account (``role`` reader or admin) with ``token`` or a new one; returns ``(reader, token)``."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise VCEInputError("a reader needs a display name (≤ 200 characters)")
    token = token or new_token()
    if len(token) < MIN_TOKEN_LENGTH:
        raise VCEInputError(f"an access token needs at least {MIN_TOKEN_LENGTH} characters")
    salt = secrets.token_bytes(16)
    reader = Reader(
        display_name=name,
        role=role,
        token_id=token[:TOKEN_ID_LENGTH],
        token_salt=salt,
        token_hash=hash_token(token, salt),
    )
    s.add(reader)
    s.flush()
    return reader, token


def check_actor(s: Session, actor: Actor, *, admin: bool = False) -> Reader | None:
    """The caller's active account (None for :data:`SYSTEM`); with ``admin``, it must be an admin.

    Raises
    ------
    AccessDenied
        Not logged in, inactive account, or not an admin when ``admin`` is asked.
    """
    if actor is SYSTEM:
        return None
    if not isinstance(actor, Actor) or actor.reader_id is None:
        raise AccessDenied("Please log in with your access token.")
    reader = s.get(Reader, actor.reader_id)
    if reader is None or not reader.active:
        raise AccessDenied("This account is not active.")
    if admin and reader.role != "admin":
        raise AccessDenied("Only a study administrator may do this.")
    return reader


def enrolled_study(s: Session, actor: Actor, name: str) -> tuple[Reader, Study]:
    """The reader's account and the study ``name`` they are enrolled in (readers only, not SYSTEM)."""
    reader = check_actor(s, actor)
    if reader is None:
        raise AccessDenied("Reading needs a reader account.")
    study = s.scalar(select(Study).where(Study.name == name))
    if study is None or s.get(Enrollment, (study.id, reader.id)) is None:
        raise AccessDenied("You are not enrolled in this study.")
    return reader, study
