"""wasmrun sessions for MCP clients: ``run_code_in_session`` keeps state across calls, named by a token.

Why a token and not the transport's session: in the MCP revision the SDK 2.x
speaks by default (2026-07-28) every request is a self-contained exchange (no
``initialize``, no connection state on the server; a streamable-HTTP server may
be stateless), so "the caller's MCP session" does not exist there. A call
without ``session`` starts a new `wasmrun.Session` and its reply carries the
session's token (``session``); calls that pass the token back run in that
session, so variables, imports and files persist. Tokens are random
(``secrets.token_urlsafe``, 128 bits): holding one is what gives access.

A call stopped by a limit is rolled back (the session is as before the call); a
session that dies (memory exhausted, its lifetime, idle time or fuel total
passed) is gone, and a call naming it gets an error that says to start a new
one. At most ``max_sessions`` live at once (each keeps one guest instance, up
to the per-run memory cap), and a dead or idle-expired session is dropped
whenever a session is looked up; ``close=true`` ends one at once.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping

from wasmrun import Limits, Result, Sandbox, Session, SessionDeadError

MAX_SESSIONS = 16
"""Default cap on live sessions held for MCP clients."""

_ROLLED_BACK = ("timeout", "fuel", "output_limit")


class SessionRefused(RuntimeError):
    """The call cannot run in a session: unknown or ended token, or too many sessions."""


class SessionStore:
    """The live wasmrun sessions of a server, by token."""

    def __init__(self, sandbox: Sandbox, limits: Limits, max_sessions: int = MAX_SESSIONS) -> None:
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 0:
            raise ValueError(f"max_sessions must be an int >= 0, got {max_sessions!r}")
        self._sandbox = sandbox
        self._limits = limits
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def run(
        self, token: str | None, code: str, limits: Limits, files: Mapping[str, str] | None, close: bool
    ) -> tuple[str, Result, list[str]]:
        """Run `code` in the session `token` (a new one when None): (token, result, notes for the client)."""
        notes: list[str] = []
        with self._lock:
            self._drop_ended()
            if token is None:
                if len(self._sessions) >= self._max:
                    raise SessionRefused(
                        f"this server holds {self._max} sessions already; close one (close=true) or try later"
                    )
                token = secrets.token_urlsafe(16)
                session = self._sandbox.session(limits=self._limits)
                self._sessions[token] = session
            else:
                found = self._sessions.get(token)
                if found is None:
                    raise SessionRefused(
                        "no such session (it ended, expired or was closed); omit `session` to start one"
                    )
                session = found
        try:
            result = session.run(code, limits=limits, files=files)
        except SessionDeadError as exc:  # it ended between the lookup and this call
            raise SessionRefused(f"the session ended ({exc}); omit `session` to start a new one") from None
        if close:
            session.close("the client closed it")
            notes.append("The session is closed.")
        elif not session.alive:
            notes.append(f"The session ended ({session.dead_reason}); omit `session` to start a new one.")
        elif result.error is not None and result.error.kind in _ROLLED_BACK:
            notes.append("This call was stopped and rolled back: the session is as it was before the call.")
        return token, result, notes

    def _drop_ended(self) -> None:
        for token, session in list(self._sessions.items()):
            if not session.alive:
                session.close()
                del self._sessions[token]

    def close(self) -> None:
        """Close every session (the server is shutting down)."""
        with self._lock:
            for session in self._sessions.values():
                session.close("the MCP server closed")
            self._sessions.clear()
