"""Reading an audit trail (``ts_notebook.audit``) as a collector would, and checking each line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from ts_notebook.audit import EVENTS, FIELDS, OUTCOMES

# Anything shaped like a token, a code or a key: a long run of base64url or hex characters.
SECRET_SHAPED = re.compile(r"[A-Za-z0-9_\-+/=]{24,}")


def read_trail(path: Path, secrets: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every event in the file, each checked: one JSON object a line, exactly the documented
    fields, a known event and outcome, an ISO time, and nothing secret or secret-shaped."""
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, "a secret is in the audit trail"
    events = []
    for line in text.splitlines():
        event = json.loads(line)
        assert tuple(event) == FIELDS, line
        assert event["event"] in EVENTS and event["outcome"] in OUTCOMES, line
        datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        assert not SECRET_SHAPED.search(line), line
        events.append(event)
    return events


def find(events: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    """The events whose fields have these values."""
    return [e for e in events if all(e[k] == v for k, v in fields.items())]
