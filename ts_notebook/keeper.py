"""The token-lifetime policy, written once: a state machine with no clock, no I/O and no lock.

The server's broker (asyncio) and the in-process source (threads) are its drivers. They tell
it what happened (a kept sign-in was found at start, a sign-in finished, the renewal timer
fired, a caller found a token refused, a refresh came back or failed, a sign-out) with the
time it happened, and carry out the actions it answers (tell listeners, arm the timer, refresh
these tokens, revoke this refresh token, keep these tokens, forget the kept ones), in order.
Holding the driver's own lock around each call is the driver's business. A refresh goes
through the store (``Store.renew``), which keeps what it brings under the store's lock.

The policy:
- renew before expiry (``renew_in``); after a passing failure, retry within the
  token's life and then every ``RETRY_AFTER`` while the sign-in lasts; timers never closer
  than ``MIN_DELAY`` apart, whatever lifetime the provider claims;
- one refresh at a time per token set, however many ask; a caller whose refused token has
  already been replaced gets the new one with no refresh at all;
- a refresh that ends for good (revoked, expired, no refresh token) signs out with the reason;
- a refresh that comes back after the sign-in it renewed is gone revokes the rotated token it
  brought, which nobody will use;
- a new sign-in's code is exchanged first, while the sign-in it replaces goes on. Then the
  replaced refresh token is dropped, never revoked, when it is the same person's (same
  ``sub``): providers that end the whole grant, or every token of the user and key, on a
  revocation (oidc-provider, Auth0's "revocation deletes grant", TradeStation) would take the
  new sign-in with it, before the exchange as after. Another person's is revoked, unless it
  came from the store, where another process may be using it (then it is dropped too);
- a sign-in kept from an earlier run is used, and renewed at once when it is due; a sign-in or
  sign-out that happened while it was being read wins over it (the service listens before its
  restore ends): after a sign-out its refresh token is revoked, after a sign-in retired as
  the replaced one would be;
- a new sign-in is kept; a sign-out forgets and revokes; a refresh token the provider refused
  for good is forgotten by the store that tried it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from .tokens import TokenSet, same_secret

# Treat an access token as expired this many seconds before the provider does, so a request
# sent just before expiry does not arrive just after it.
EXPIRY_SKEW = 30.0
# Renew this long before expiry (a third of the lifetime for short-lived tokens) ...
RENEW_BEFORE = 120.0
# ... and after a renewal fails for a passing reason (network, 5xx), try again after this long.
RETRY_AFTER = 15.0
# Renewal timers fire at least this many seconds apart.
MIN_DELAY = 1.0
# What a driver logs for ``Drop`` (%s: which sign-in, such as " (hub user alice)", or "").
SUPERSEDED = (
    "Signed in again as the same person%s: the previous refresh token is superseded and dropped, "
    "not revoked (some providers would end the new sign-in with it)"
)


@dataclass(frozen=True)
class Notify:
    """The state changed: tell listeners (kernels, widgets)."""


@dataclass(frozen=True)
class ArmTimer:
    """(Re)arm the one renewal timer to fire in ``delay`` seconds; None disarms it."""

    delay: float | None


@dataclass(frozen=True)
class Refresh:
    """Renew ``tokens`` at the token endpoint, then report ``refreshed`` or ``refresh_failed``."""

    tokens: TokenSet


@dataclass(frozen=True)
class Revoke:
    """Revoke this refresh token at the provider (a failure is only logged)."""

    refresh_token: str


@dataclass(frozen=True)
class Drop:
    """The same person signed in again: this refresh token is superseded. It is not revoked
    (that would end the new sign-in at some providers) and not kept; say so in the log."""

    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class Keep:
    """Keep ``tokens`` in the store (a new sign-in), replacing what was kept."""

    tokens: TokenSet


@dataclass(frozen=True)
class Forget:
    """Delete the kept sign-in: only while it holds ``refresh_token``, unless that is None."""

    refresh_token: str | None = None


Action = Notify | ArmTimer | Refresh | Revoke | Drop | Keep | Forget


# -- the lifetime policy: when tokens are good, due, renewed, retried, taken over ---------------


def fresh(expires_at: float, lifetime: float, now: float | None = None) -> bool:
    """True while an access token is good for more than the skew (scaled down for short
    lifetimes, so a 4-second test token is not stale from birth)."""
    left = expires_at - (time.time() if now is None else now)
    return left > min(EXPIRY_SKEW, lifetime / 4)


def renews_at(expires_at: float, lifetime: float) -> float:
    """When an access token that expires at ``expires_at`` is due for renewal (wall clock)."""
    return expires_at - min(RENEW_BEFORE, lifetime / 3)


def _until_due(tokens: TokenSet, now: float | None) -> float:
    return renews_at(tokens.expires_at, tokens.lifetime) - (time.time() if now is None else now)


def due(tokens: TokenSet, now: float | None = None) -> bool:
    """True once ``tokens`` should be renewed."""
    return _until_due(tokens, now) <= 0


def renew_in(tokens: TokenSet, now: float | None = None) -> float:
    """Seconds until ``tokens`` should be renewed (at least ``MIN_DELAY``: never a tight loop)."""
    return max(MIN_DELAY, _until_due(tokens, now))


def retry_in(tokens: TokenSet, now: float | None = None) -> float:
    """Seconds until a renewal that failed for a passing reason is tried again: within the
    access token's remaining life while it has one, then every RETRY_AFTER for as long as the
    sign-in lasts (the refresh token may still be good, and a rotating one lapses after half an
    hour unused). Never less than ``MIN_DELAY``."""
    left = tokens.seconds_left(now)
    return max(MIN_DELAY, min(RETRY_AFTER, left / 2) if left > 1 else RETRY_AFTER)


def replaced(stale: str | None, current: str | None) -> bool:
    """Whether the access token a caller found refused (``stale``) has been replaced already:
    then the caller uses ``current``, and nothing is sent."""
    return stale is not None and current is not None and not same_secret(stale, current)


def call_needed(tokens: TokenSet | None, stale: str | None, now: float | None = None) -> bool:
    """Whether a renewal asked for from outside (the hub service's ``api/refresh``) may reach the
    provider: only when the current token was refused (a refused token replaced since is not),
    or the current one is due. Asking cannot force it."""
    if tokens is None:
        return False
    return (stale is not None and not replaced(stale, tokens.access_token)) or due(tokens, now)


def another_person(a: TokenSet, b: TokenSet) -> bool:
    """Whether two sign-ins are known to be different people (both name a ``sub``, and they
    differ). Unknown counts as the same: a revocation that ends the new sign-in costs more."""
    first, second = a.user.get("sub"), b.user.get("sub")
    return bool(first and second and first != second)


def take_over(
    kept: TokenSet | None, ours: TokenSet, now: float
) -> tuple[Literal["another person", "take", "refresh"], TokenSet]:
    """What a renewal of ``ours`` does with what the store holds (``kept``), under its lock:

    - ``("another person", ours)``: another TradeStation account signed in elsewhere (a
      terminal); never taken over (orders would go to that account). Ours is renewed and goes
      on in this process only; the store stays the newer sign-in's.
    - ``("take", kept)``: another process renewed moments ago; its tokens, nothing sent.
    - ``("refresh", base)``: renew ``base``: ``kept`` when it is newer than ours (ours was
      spent by whoever kept it), else ours. An older record (a write that failed, a store
      refused meanwhile) holds a refresh token that may be spent: never sent.
    """
    if kept is not None and another_person(kept, ours):
        return "another person", ours
    if kept is not None and kept.expires_at > ours.expires_at:
        return ("refresh", kept) if due(kept, now) else ("take", kept)
    return "refresh", ours


class Keeper:
    """One sign-in's tokens and what to do next. Not thread-safe: drivers serialise calls."""

    def __init__(self) -> None:
        self.tokens: TokenSet | None = None
        self.error: str | None = None
        # The token set a refresh in flight renews (at most one at a time).
        self.refreshing: TokenSet | None = None
        # Sign-ins and sign-outs so far: a restore that began before the latest one lost.
        self.events = 0
        # Whether the current tokens came from the store (restored, or another process's
        # renewal taken over): other processes may be using them too.
        self.shared = False

    # -- sign-in and sign-out --------------------------------------------------------------------

    def restoring(self) -> int:
        """A restore begins (the kept sign-in is being read); hand the mark to ``restored``."""
        return self.events

    def restored(self, tokens: TokenSet, now: float, mark: int) -> list[Action]:
        """A sign-in kept by an earlier run was read, by a restore begun at ``mark``: use it,
        renewed at once when it is due (after a restart its access token usually is); one
        another process renewed moments ago is used as it is, and renewed when due. A sign-in
        or sign-out since ``mark`` wins: the kept refresh token is then retired."""
        if mark != self.events or self.tokens is not None:
            kept = tokens.refresh_token
            if not kept or (self.tokens is not None and kept == self.tokens.refresh_token):
                return []
            # Signed out meanwhile: revoke it, as the sign-out would have. Signed in: the kept one
            # may be another process's, so it is only dropped.
            return [Revoke(kept) if self.tokens is None else Drop(kept), Forget(kept)]
        self.shared = True
        if not due(tokens, now):
            return self._install(tokens, now)
        self.tokens, self.error, self.refreshing = tokens, None, tokens
        return [Notify(), Refresh(tokens)]

    def signed_in(self, tokens: TokenSet, now: float) -> list[Action]:
        """A sign-in finished (its code exchanged): make ``tokens`` current and keep them. The
        refresh token of the sign-in it replaces is dropped when it is the same person's, or
        came from the store (another process may be using it), and revoked otherwise."""
        overtaken, shared = self.tokens, self.shared
        self.events += 1
        self.shared = False
        actions = self._install(tokens, now)
        if tokens.refresh_token:  # without one, nothing outlives the access token
            actions.append(Keep(tokens))
        if overtaken is not None and overtaken.refresh_token and overtaken.refresh_token != tokens.refresh_token:
            old = overtaken.refresh_token
            actions.append(Drop(old) if shared else self._retire(old, overtaken, tokens))
        return actions

    def failed(self, message: str) -> list[Action]:
        """A sign-in did not complete: say why (the current tokens, if any, stay)."""
        self.error = message
        return [Notify()]

    def signed_out(self) -> list[Action]:
        """Forget the sign-in everywhere (the kept one too) and revoke its refresh token."""
        old = self.tokens
        self.events += 1
        self.shared = False
        self.tokens, self.error, self.refreshing = None, None, None
        actions: list[Action] = [Notify(), ArmTimer(None), Forget()]
        if old is not None and old.refresh_token:
            actions.append(Revoke(old.refresh_token))
        return actions

    # -- renewal ---------------------------------------------------------------------------------

    def timer_fired(self) -> list[Action]:
        """The renewal timer fired."""
        return self._refresh_unless_under_way()

    def refresh_wanted(self, stale: str | None) -> list[Action]:
        """A caller found ``stale`` refused (None: renew regardless). Nothing to do when it has
        been replaced already, or a refresh of the current tokens is under way."""
        if self.tokens is None or replaced(stale, self.tokens.access_token):
            return []
        return self._refresh_unless_under_way()

    def refreshed(self, old: TokenSet, new: TokenSet, now: float, fetched: bool = True) -> list[Action]:
        """The refresh of ``old`` brought ``new``: from the provider (``fetched``), or taken
        over from the store, where another process had kept it."""
        if self.refreshing is old:
            self.refreshing = None
        if self.tokens is old:
            self.shared = self.shared or not fetched
            return self._install(new, now)
        if fetched and new.refresh_token and new.refresh_token != old.refresh_token:
            # Signed out or in again meanwhile: a rotated token nobody will use.
            retire = (
                Revoke(new.refresh_token) if self.tokens is None else self._retire(new.refresh_token, new, self.tokens)
            )
            return [retire, Forget(new.refresh_token)]
        return []

    def refresh_failed(self, old: TokenSet, now: float, ended: str | None = None) -> list[Action]:
        """The refresh of ``old`` failed: for good when ``ended`` says why, else for a passing
        reason (network, 5xx, a reply nobody foresaw)."""
        if self.refreshing is old:
            self.refreshing = None
        if self.tokens is not old:
            return []  # replaced or signed out meanwhile
        if ended is not None:
            self.tokens, self.error = None, ended
            return [Notify(), ArmTimer(None)]
        return [ArmTimer(retry_in(old, now))]

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _retire(refresh_token: str, old: TokenSet, new: TokenSet) -> Action:
        """What to do with ``old``'s refresh token now that ``new`` is current."""
        return Revoke(refresh_token) if another_person(old, new) else Drop(refresh_token)

    def _refresh_unless_under_way(self) -> list[Action]:
        if self.tokens is None or self.refreshing is self.tokens:
            return []
        self.refreshing = self.tokens
        return [Refresh(self.tokens)]

    def _install(self, tokens: TokenSet, now: float) -> list[Action]:
        self.tokens, self.error, self.refreshing = tokens, None, None
        delay = renew_in(tokens, now) if tokens.refresh_token else None
        return [Notify(), ArmTimer(delay)]
