"""The ``suanli`` command line (``api.cli.app``); ``main`` is the console entry point."""

from api.cli.app import app, main

__all__ = ["app", "main"]
