"""Scoring backends: what runs a saved model directory (``torch``, ``onnxruntime``,
``firmware``, …), and :func:`load_model`. One registry, filled where each backend is
defined, and read by :func:`load_model`, the trigger menu, the topology and the CLI.

A backend is a loader ``(directory, variant, threads) -> Scorer`` with a one-line
description, registered with :func:`register_backend`. Backends of higher layers (the
firmware's) and those that import heavy modules (onnxruntime's) are named by the
``darktrigger.backends`` entry points of an installed distribution (a module whose import
registers them), so that their names are known without importing them; they are imported
on first use.

    >>> from darktrigger.models.backends import BACKENDS
    >>> BACKENDS.names()[:3]
    ['firmware', 'onnxruntime', 'torch']
    >>> BACKENDS.get("onnx")
    Traceback (most recent call last):
    ...
    darktrigger.replay.errors.UnknownNameError: no scoring backend named 'onnx'; did you mean 'onnxruntime'? Known: firmware, onnxruntime, torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

from darktrigger.models.base import SCORERS, Scorer
from darktrigger.models.card import ModelFileError, read_card
from darktrigger.replay.errors import ConfigError, UnknownNameError
from darktrigger.replay.registry import Registry

#: The entry-point group naming modules that register backends of higher layers.
ENTRY_POINT_GROUP = "darktrigger.backends"


class Loader(Protocol):
    def __call__(self, directory: Path, variant: str | None, *, threads: int) -> Scorer: ...


@dataclass(frozen=True)
class Backend:
    """A registered scoring backend: its name, what it is, and its loader."""

    name: str
    description: str
    load: Loader


class BackendRegistry(Registry[Backend]):
    """The registry of backends, with those of installed entry points imported on first use."""

    def __init__(self) -> None:
        super().__init__("scoring backend")
        self._plugins: dict[str, str] | None = None

    def plugins(self) -> dict[str, str]:
        """``{name: module}`` of the backends that entry points name (not imported yet)."""
        if self._plugins is None:
            self._plugins = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        return self._plugins

    def get(self, name: str) -> Backend:
        if name not in self._entries and name in self.plugins():
            module = self.plugins()[name]
            importlib.import_module(module)
            if name not in self._entries:
                raise ConfigError(f"scoring backend {name!r}: its module {module} did not register it")
        return super().get(name)

    def names(self) -> list[str]:
        return sorted({*self._entries, *self.plugins()})

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self.plugins()


BACKENDS = BackendRegistry()


def register_backend(name: str, description: str) -> Callable[[Loader], Loader]:
    """Register ``loader`` as the backend ``name``; use as a decorator where the backend is defined.

        >>> @register_backend("doctest-torch", "torch, under another name")
        ... def _load(directory, variant, *, threads):
        ...     return load_model(directory, "torch", variant=variant)
        >>> BACKENDS.get("doctest-torch").description
        'torch, under another name'
        >>> BACKENDS.unregister("doctest-torch")
    """
    def decorate(loader: Loader) -> Loader:
        BACKENDS.register(name)(Backend(name, description, loader))
        return loader

    return decorate


def load_model(directory: str | Path, backend: str = "torch", *, variant: str | None = None,
               threads: int = 1) -> Scorer:
    """The scorer saved in ``directory``, run by ``backend`` (a name in :data:`BACKENDS`).

        >>> import numpy as np
        >>> from darktrigger.models import get_scorer
        >>> directory = get_scorer("st").save("st-model")
        >>> scorer = load_model(directory, backend="onnxruntime")
        >>> scorer.spec, scorer.score(np.full((1, 57), 10.0, np.float32))
        ('st', array([190.], dtype=float32))
    """
    try:
        loader = BACKENDS.get(backend).load
    except UnknownNameError as exc:  # a setting the user gave: a configuration error
        raise ConfigError(f"{directory}: {exc.args[0]}") from None
    return loader(Path(directory), variant, threads=threads)


@register_backend("torch", "the scorer's own class, in torch (or numpy for the baselines); trains too")
def _load_torch(directory: Path, variant: str | None, *, threads: int) -> Scorer:
    card = read_card(directory)
    try:
        cls = SCORERS.get(card.scorer)
    except UnknownNameError as exc:
        raise ModelFileError(f"{directory / 'card.json'}: {exc}") from None
    return cls.load(directory, variant)
