"""Composition root: the ASGI app, the CLI, the dev stack and background workers."""
