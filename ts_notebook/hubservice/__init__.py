"""The JupyterHub service's parts: so far, the vault that keeps each hub user's sign-in
encrypted at rest."""
