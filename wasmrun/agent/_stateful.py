"""A stateful ``run_code``: one `wasmrun.Session` per conversation, replaced when it dies, explained to the model."""

from __future__ import annotations

from collections.abc import Mapping

from .._limits import Limits
from .._result import Result
from .._sandbox import Sandbox
from .._session import Session

# Kinds of a stopped call that a live session rolls back (see wasmrun._session).
_ROLLED_BACK = ("timeout", "fuel", "output_limit")


class ConversationSession:
    """Runs each call in the conversation's session; `note` says what the model should know about it afterwards."""

    def __init__(self, sandbox: Sandbox, limits: Limits) -> None:
        self.sandbox = sandbox
        self.limits = limits
        self.session: Session | None = None
        #: After `run`: the call was rolled back, the session ended, or a new one replaced a dead one (else None).
        self.note: str | None = None

    def run(self, code: str, limits: Limits, files: Mapping[str, bytes | str]) -> Result:
        """Run `code` in the session (made at the first call, with the input `files`, or after the last one died)."""
        self.note = None
        session = self.session
        if session is not None and not session.alive:
            self.note = (
                f"The previous session ended ({session.dead_reason}); this code ran in a new, empty session: "
                "define again what it needs."
            )
            session.close()
            session = None
        new = session is None
        if session is None:
            session = self.session = self.sandbox.session(limits=self.limits)
        result = session.run(code, limits=limits, files=files if new else None)
        if not session.alive:
            self.note = f"The session ended ({session.dead_reason}); the next call starts a new, empty session."
        elif result.error is not None and result.error.kind in _ROLLED_BACK:
            self.note = "This call was stopped and rolled back: the session is as it was before the call."
        return result

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
