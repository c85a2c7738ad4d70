"""The JupyterHub service that keeps the client secret and users' refresh tokens out of users'
servers (issue in progress: the encrypted vault is its first part)."""
