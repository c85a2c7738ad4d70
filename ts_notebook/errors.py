"""One exception family for ts_notebook; every message says what to do next.

Messages never carry a token, code, verifier or secret: they are shown in notebook outputs,
which end up in saved files.
"""

from __future__ import annotations

import re

# An OAuth error code as providers spell them (``invalid_grant``): safe to show and to save.
ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A provider's error_description is cut to this many characters.
MAX_DESCRIPTION = 300


class TSError(Exception):
    """Base class of every error ts_notebook raises."""


class ConfigError(TSError):
    """A setting is missing or malformed."""


class NotSignedIn(TSError):
    """No usable TradeStation sign-in: the user has to run ``%ts_login``."""

    def __init__(self, reason: str = "") -> None:
        if "%ts_login" in reason:  # the reason already says what to do
            super().__init__(reason)
            return
        lead = f"{reason.rstrip('.')}. " if reason else "Not signed in to TradeStation. "
        super().__init__(f"{lead}Run %ts_login (or ts.login()) to sign in.")


# What to tell the user for each provider error.
HINTS = {
    "invalid_grant": "Run %ts_login to sign in again",
    "invalid_client": "Check TS_CLIENT_ID and TS_CLIENT_SECRET (or the secret file)",
    "unauthorized_client": "Check that your key is allowed this grant and callback URL",
    "access_denied": "Run %ts_login and choose Allow to sign in",
    "invalid_scope": "Remove the scopes your key lacks from TS_SCOPES",
    "invalid_id_token": "Check TS_SIGNIN_URL and TS_CLIENT_ID, then run %ts_login again",
    "network_error": "Check the network connection (and HTTPS_PROXY), then try again",
    "no_refresh_token": "Add offline_access to TS_SCOPES and run %ts_login again",
    "invalid_response": "Check that TS_SIGNIN_URL points at the sign-in service, then try again",
    "invalid_discovery": "Check that TS_SIGNIN_URL is the sign-in service's own address (its issuer), then try again",
    "invalid_request": "Run %ts_login again",
    "invalid_address": "Copy the whole address from the browser's address bar and paste it again",
    "hub_service_unavailable": "The hub's ts_notebook service keeps your sign-in; try again in a minute, "
    "and if it keeps failing, tell your hub's administrator",
}


# What to do after an error nobody foresaw.
OTHER_HINT = "Try again; if it keeps failing, run %ts_login again"


class OAuthError(TSError):
    """The sign-in provider refused or failed a request.

    Attributes:
        error: the provider's ``error`` code (``invalid_grant``, ``access_denied`` ...), or a
            local code such as ``network_error``.
        description: the provider's ``error_description``, if any.
    The message ends with what the user should do next: ``hint`` when given, else the hint
    for ``error`` (``HINTS``).
    """

    def __init__(
        self, error: str, description: str = "", hint: str | None = None, retry_after: float | None = None
    ) -> None:
        hint = HINTS.get(error, OTHER_HINT) if hint is None else hint
        self.error = error
        self.description = description
        # Seconds the provider asked to be left alone (its Retry-After), if it said.
        self.retry_after = retry_after
        text = f"TradeStation sign-in failed: {error}"
        if description:
            text += f" ({description})"
        if hint:
            text += f". {hint}"
        super().__init__(text)

    @property
    def reason(self) -> str:
        """Why an aside failed (a revocation), for a message that may be saved (a notebook
        output): the error code alone, never the provider's own words."""
        return self.error if ERROR_CODE.fullmatch(self.error) else "an unreadable error"

    @property
    def permanent(self) -> bool:
        """True when retrying the same request cannot succeed (the grant itself is dead)."""
        return self.error in PERMANENT_ERRORS


# Errors after which only a new interactive sign-in helps.
PERMANENT_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied", "invalid_token", "no_refresh_token"}
)


def sign_in_ended(exc: BaseException) -> str | None:
    """What every widget says once a refresh has failed for good (revoked, past its 24 h, no
    refresh token); None when ``exc`` is a passing failure, worth retrying."""
    if not isinstance(exc, OAuthError) or not exc.permanent:
        return None
    why = (exc.description or exc.error).rstrip(". ")
    return f"Your TradeStation sign-in has ended ({why}). Run %ts_login to sign in again."


class BrokerError(TSError):
    """The kernel could not reach or use the Jupyter server's token broker."""
