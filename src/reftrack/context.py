"""What an Artifact, Run or Api works against: settings, the registry and the backends."""

from __future__ import annotations

from .backends import Backends
from .registry import Registry
from .settings import Settings

__all__ = ["Context"]


class Context:
    """Settings plus the registry (opened on first use) and the storage backends."""

    def __init__(self, settings: Settings | None = None, *, registry: str | None = None) -> None:
        base = settings or Settings.from_env()
        if registry is not None:
            base = base.model_copy(update={"registry": registry})
        self.settings = base
        self.backends = Backends(base)
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.settings.registry, clock=self.settings.clock)
        return self._registry
