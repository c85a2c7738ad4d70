"""A local fake of TradeStation's sign-in (Auth0-style OpenID Connect) and a tiny v3 API.

Used by the project's tests and by the no-account demo::

    with Emulator(client_id="test-client") as em:
        ...  # point the client at em.url
"""

from .app import DEFAULT_REDIRECT_URIS, Emulator

__all__ = ["DEFAULT_REDIRECT_URIS", "Emulator"]
