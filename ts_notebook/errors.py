"""One exception family for ts_notebook; every message says what to do next.

Messages never carry a token, code, verifier or secret: they are shown in notebook outputs,
which end up in saved files.
"""

from __future__ import annotations


class TSError(Exception):
    """Base class of every error ts_notebook raises."""


class ConfigError(TSError):
    """A setting is missing or malformed."""


class NotSignedIn(TSError):
    """No usable TradeStation sign-in: the user has to run ``%ts_login``."""

    def __init__(self, reason: str = "") -> None:
        lead = f"{reason.rstrip('.')}. " if reason else "Not signed in to TradeStation. "
        super().__init__(f"{lead}Run %ts_login (or ts.login()) to sign in.")


class OAuthError(TSError):
    """The sign-in provider refused or failed a request.

    Attributes:
        error: the provider's ``error`` code (``invalid_grant``, ``access_denied`` ...), or a
            local code such as ``network_error``.
        description: the provider's ``error_description``, if any.
    The message ends with what the user should do next (``hint``).
    """

    def __init__(self, error: str, description: str = "", hint: str = "") -> None:
        self.error = error
        self.description = description
        text = f"TradeStation sign-in failed: {error}"
        if description:
            text += f" ({description})"
        if hint:
            text += f". {hint}"
        super().__init__(text)

    @property
    def permanent(self) -> bool:
        """True when retrying the same request cannot succeed (the grant itself is dead)."""
        return self.error in PERMANENT_ERRORS


# Errors after which only a new interactive sign-in helps.
PERMANENT_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied", "invalid_token"}
)


class BrokerError(TSError):
    """The kernel could not reach or use the Jupyter server's token broker."""
