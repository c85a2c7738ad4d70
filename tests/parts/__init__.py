"""Parts the tests share, one module per role (import from the module, never from here).

- ``waiting``: waiting for something to happen, with or without an event loop, and whether a
  port is free.
- ``kernels``: kernels and processes a test drives: a kernel over ZMQ (``Kernel``), a kernel
  with no server, terminal IPython in a pty, code run over a server's websocket, and the
  environment a child process starts from.
- ``browser``: the scripted browser (cookies, redirects, forms) and the system browser as
  ``webbrowser`` finds it (``note_browser``).
- ``fakes``: real HTTP servers on 127.0.0.1 that misbehave as providers and proxies do, and
  calls that fail once.
- ``signin``: the ways a test signs in: ``approve`` (the emulator's page, no browser),
  ``sign_in_at`` (a browser at a sign-in address, no Jupyter server) and ``sign_in`` (a Jupyter
  server, through the scripted browser).
"""
