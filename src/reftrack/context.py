"""What an Artifact, Run or Api works against: settings, the registry and the backends."""

from __future__ import annotations

from .backends import Backends
from .registry.remote import AnyRegistry, open_registry
from .settings import Settings

__all__ = ["Context"]


class Context:
    """Settings plus the registry (opened on first use) and the storage backends.

    The registry is a local one (a path or an SQLAlchemy URL) or, for an ``http(s)://``
    URL, a registry server reached with ``Settings.token``
    (:class:`~reftrack.registry.remote.RemoteRegistry`)."""

    def __init__(self, settings: Settings | None = None, *, registry: str | None = None) -> None:
        base = settings or Settings.from_env()
        if registry is not None:
            base = base.model_copy(update={"registry": registry})
        self.settings = base
        self.backends = Backends(base)
        self._registry: AnyRegistry | None = None

    @property
    def registry(self) -> AnyRegistry:
        if self._registry is None:
            self._registry = open_registry(self.settings.registry, token=self.settings.token,
                                           clock=self.settings.clock)
        return self._registry
