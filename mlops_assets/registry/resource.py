"""The model registry as a Dagster resource: the profile's backend, with its version index kept."""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg
from pydantic import Field

from mlops_assets.core.storage import StorageResource
from mlops_assets.registry.index import IndexedRegistry, VersionIndex
from mlops_assets.registry.protocol import ModelRegistry


class RegistryResource(dg.ConfigurableResource, ABC):
    """The profile's registry backend. With ``index`` set, every change it makes is also written
    to the version index in that storage (what `mlops-assets versions` reads)."""

    index: StorageResource | None = Field(
        default=None, description="Storage of the version index (registry-index/<model>/)."
    )

    @abstractmethod
    def open_registry(self) -> ModelRegistry: ...

    def get_registry(self) -> ModelRegistry:
        registry = self.open_registry()
        if self.index is None:
            return registry
        return IndexedRegistry(registry, VersionIndex(self.index.get(), registry.model_name))

    @property
    @abstractmethod
    def backend_name(self) -> str: ...
