"""The team registry server (``reftrack server``): an HTTP JSON API over the registry with
users, API tokens and per-project access control. Needs the ``server`` extra:
``pip install 'reftrack[server]'`` (FastAPI, uvicorn)."""

from .app import API_PREFIX, create_app
from .deps import Limits

__all__ = ["API_PREFIX", "Limits", "create_app"]
