"""The gateway's HTTP API (FastAPI): see docs/api.md."""

from gateway.api.app import create_app, make_server, serve_api
from gateway.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app", "make_server", "serve_api"]
