"""The audit trail: who signed in to TradeStation, renewed, signed out, and what was refused.

One JSON object a line, with the same fields every time (:data:`FIELDS`), written by the hub
service and by a single Jupyter server: to the file ``TS_NOTEBOOK_AUDIT_LOG`` (or
``c.TSNotebook.audit_log``) names, appended and made 0600, else to the ``ts_notebook.audit``
logger at INFO. Nothing secret is ever a field: a reason is a provider's error code or one of
ts_notebook's own words, the subject is the id_token's ``sub``.

Events (:data:`EVENTS`):

- ``signed_in``: a code exchanged (outcome ``ok``, or ``failed`` with the provider's error);
- ``renewed``: an access token renewed (``ok``; ``failed``, retried later; ``ended``: the
  sign-in is over and the user must sign in again);
- ``signed_out``: a sign-in forgotten and revoked (``ok``; the reason says why when nobody
  asked, such as a hub user deleted, and whether revoking failed);
- ``refused``: a call the hub service did not answer (outcome ``refused``, the reason its
  error code: ``slow_down``, ``not_a_user`` ...).

Lines that a flood or an outage repeats (refusals, failed renewals) have a :class:`Quota`: a
few back to back, then a few a minute; the next line written says how many were left out.
Every field is cut to :data:`MAX_FIELD` characters and written as ASCII JSON (``\u2028`` and
the like escaped), so no value, whoever chose it, can break a line in two.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import TSError
from .rates import Bucket

LOGGER = "ts_notebook.audit"
FIELDS = ("time", "event", "source", "hub_user", "server", "subject", "outcome", "reason")
EVENTS = frozenset({"signed_in", "renewed", "signed_out", "refused"})
OUTCOMES = frozenset({"ok", "failed", "ended", "refused"})
# The longest value a field keeps (one of ts_notebook's own sentences fits).
MAX_FIELD = 300
# Failed renewals one sign-in writes: FAILED_BURST back to back, then FAILED_PER_MINUTE.
FAILED_BURST, FAILED_PER_MINUTE = 5, 1

log = logging.getLogger(LOGGER)


class AuditError(TSError):
    """The audit file cannot be written; the message says what to fix."""


class Audit:
    """Where events go: a file of JSON lines, or the ``ts_notebook.audit`` logger.

    Args:
        path: the file (made 0600 in a folder made 0700 if missing), or None for the logger.
        source: who writes ("hub service", "server").

    Raises:
        AuditError: the file cannot be opened for appending.
    """

    def __init__(self, path: str | Path | None, source: str) -> None:
        self.source = source
        self.path = Path(path).expanduser() if path else None
        self._lock = threading.Lock()
        self._fd: int | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                self._fd = os.open(self.path, flags, 0o600)
                os.fchmod(self._fd, 0o600)
            except OSError as exc:
                raise AuditError(
                    f"Cannot append to the audit log {str(self.path)!r} ({exc.strerror}): fix "
                    "TS_NOTEBOOK_AUDIT_LOG (or c.TSNotebook.audit_log), or unset it to log to the "
                    f"{LOGGER} logger."
                ) from exc

    def record(
        self,
        event: str,
        outcome: str,
        *,
        hub_user: str | None = None,
        server: str | None = None,
        subject: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Write one event (never raises: a full disk is logged, and the event is lost)."""
        entry: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event,
            "source": self.source,
            "hub_user": hub_user,
            "server": server,
            "subject": subject,
            "outcome": outcome,
            "reason": reason,
        }
        entry = {k: v[:MAX_FIELD] if isinstance(v, str) else v for k, v in entry.items()}
        line = json.dumps(entry, ensure_ascii=True, separators=(",", ":"))
        if self._fd is None:
            log.info("%s", line)
            return
        data = (line + "\n").encode("utf-8")
        with self._lock:  # one write per line, appended: lines of several writers never mix
            try:
                os.write(self._fd, data)
            except OSError as exc:
                logging.getLogger(__name__).error("ts_notebook: an audit event was not written (%s)", exc.strerror)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Quota:
    """How many lines of one kind one writer adds: ``burst`` back to back, then ``per_minute``;
    the others are counted, and the next line let through says how many were left out."""

    def __init__(self, burst: int, per_minute: float, now: float) -> None:
        self._bucket = Bucket(burst, per_minute / 60, now)
        self._left_out = 0

    def admit(self, now: float, reason: str | None) -> tuple[bool, str | None]:
        """Whether to write a line now, and its reason (saying how many were left out)."""
        if self._bucket.take(now) > 0:
            self._left_out += 1
            return False, reason
        if self._left_out:
            said = f"{self._left_out} more not written since"
            reason = f"{reason}; {said}" if reason else said
            self._left_out = 0
        return True, reason


class Trail:
    """An audit trail with some fields fixed (whose sign-in it is); None writes nothing. Failed
    renewals, which an outage repeats for as long as it lasts, have a :class:`Quota`."""

    def __init__(self, audit: Audit | None = None, clock: Any = time.monotonic, **fixed: str | None) -> None:
        self.audit, self.fixed, self.clock = audit, fixed, clock
        self._failed = Quota(FAILED_BURST, FAILED_PER_MINUTE, clock())

    def __call__(self, event: str, outcome: str, **fields: str | None) -> None:
        if self.audit is None:
            return
        given = {k: v for k, v in fields.items() if v is not None}  # a fixed field is not unset
        if outcome == "failed":
            write, given["reason"] = self._failed.admit(self.clock(), given.get("reason"))
            if not write:
                return
        self.audit.record(event, outcome, **{**self.fixed, **given})  # type: ignore[arg-type]
