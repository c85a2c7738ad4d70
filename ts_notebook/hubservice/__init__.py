"""The JupyterHub service that keeps every hub user's TradeStation sign-in: the client secret
and the refresh tokens stay here, users' servers get access tokens (see :mod:`.app`); sign-ins
are kept encrypted in :mod:`.vault`. Run it with ``ts-notebook-hub-service``."""
