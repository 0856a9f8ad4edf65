"""Log-in over HTTP: ``POST /rs/session`` exchanges an access token for an HttpOnly session cookie.

The Gradio handlers never receive the access token and keep no identity in ``gr.State`` (which is bound
to Gradio's client-chosen session hash): every call resolves the caller from the session cookie (browser)
or the session header (API clients such as ``gradio_client``) through
:meth:`reader_study.service.ReaderStudyService.session_actor`. Readers and administrators have separate
cookies, so one browser can hold both in the all-in-one demo.

``POST /rs/session?role=reader|admin`` with JSON ``{"token": "..."}``: 200 ``{"ok": true, "name": ...}`` and
the cookie, 401 ``{"ok": false, "message": ...}`` for a bad token, 403 for a token of the other role,
429 when the address failed too often. ``DELETE /rs/session?role=...`` logs out and clears the cookie.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..auth import Actor
from ..errors import AccessDenied
from ..service import ReaderStudyService
from ..service.sessions import SESSION_LIFETIME

SESSION_PATH = "/rs/session"
COOKIES = {"reader": "rs_session", "admin": "rs_admin"}
"""Session cookie of each role."""
HEADERS = {"reader": "x-reader-session", "admin": "x-admin-session"}
"""Session header of each role (for API clients)."""
ROLE_REFUSALS = {
    "reader": "This is not a reader token (it belongs to a study administrator).",
    "admin": "This is not an admin token.",
}


def _role(request: Request) -> str:
    role = request.query_params.get("role", "reader")
    return role if role in COOKIES else "reader"


def session_routes(service: ReaderStudyService, roles: tuple[str, ...] = ("reader", "admin")) -> list[Route]:
    """The log-in routes for ``roles`` (a reader deployment passes only ``("reader",)``)."""

    async def login(request: Request) -> JSONResponse:
        role = _role(request)
        if role not in roles:
            return JSONResponse({"ok": False, "message": "Not available here."}, status_code=404)
        try:
            body = await request.json()
            token = str(body.get("token", "")) if isinstance(body, dict) else ""
        except ValueError:
            token = ""
        client = request.client.host if request.client else ""
        try:
            actor, secret = await run_in_threadpool(service.login, token, client)
        except AccessDenied as exc:
            status = 429 if "Too many" in str(exc) else 401
            return JSONResponse({"ok": False, "message": str(exc)}, status_code=status)
        if actor.role != role:
            await run_in_threadpool(service.logout, secret)
            return JSONResponse({"ok": False, "message": ROLE_REFUSALS[role]}, status_code=403)
        response = JSONResponse({"ok": True, "name": actor.display_name})
        response.set_cookie(
            COOKIES[role],
            secret,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(request: Request) -> JSONResponse:
        role = _role(request)
        await run_in_threadpool(service.logout, request.cookies.get(COOKIES[role]))
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIES[role], path="/")
        return response

    return [Route(SESSION_PATH, login, methods=["POST"]), Route(SESSION_PATH, logout, methods=["DELETE"])]


def session_secret(request: Any, role: str) -> str | None:
    """The session secret a Gradio request carries for ``role`` (cookie first, then header), or None."""
    raw = getattr(request, "request", None) if request is not None else None
    if raw is not None:
        cookies, headers = raw.cookies, raw.headers
    else:
        kwargs = getattr(request, "kwargs", {}) or {}
        cookies, headers = kwargs.get("cookies", {}), kwargs.get("headers", {})
    return cookies.get(COOKIES[role]) or headers.get(HEADERS[role])


def caller(service: ReaderStudyService, request: Any, role: str) -> Actor:
    """The logged-in account of ``role`` making this Gradio request; :class:`AccessDenied` otherwise."""
    actor = service.session_actor(session_secret(request, role))
    if actor.role != role:
        raise AccessDenied(ROLE_REFUSALS[role])
    return actor


LOGIN_JS = """
async (token) => {
  const role = '%s';
  try {
    const r = await fetch('/rs/session?role=' + role, {method: 'POST', credentials: 'same-origin',
      headers: {'content-type': 'application/json'}, body: JSON.stringify({token: token || ''})});
    const body = await r.json();
    return [body.ok ? '' : (body.message || 'Log-in failed.')];
  } catch (e) { return ['The server cannot be reached; try again.']; }
}
"""
"""Browser side of a log-in button (``%s``: the role): posts the token and hands the Python handler a
note instead (empty when the log-in worked), so the token never travels through a Gradio endpoint."""

LOGOUT_JS = """
async () => {
  await fetch('/rs/session?role=%s', {method: 'DELETE', credentials: 'same-origin'});
  return [];
}
"""
