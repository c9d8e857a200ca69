"""Scoring backends: what runs a saved model directory (``torch``, ``onnxruntime``,
``firmware``, …), and :func:`load_model`. One registry, filled where each backend is
defined, and read by :func:`load_model`, the trigger menu, the topology and the CLI.

A backend is a loader ``(directory, variant, threads) -> Scorer`` with a one-line
description, registered with :func:`register_backend`. Backends of higher layers (the
firmware's) and those that import heavy modules (onnxruntime's) are named by the
``darktrigger.backends`` entry points of an installed distribution (a module whose import
registers them), so that their names are known without importing them; they are imported
on first use (:data:`KNOWN_PLUGINS` names those of darktrigger's own layers too, so that a
checkout whose installed metadata predates one still finds it).

A model directory that only one backend can run (an imported hls4mlEmulator plugin has no
torch or ONNX model) holds ``backend.json``, ``{"backend": NAME}``: :func:`load_model` loads
it with that backend whatever backend was asked for.

    >>> from darktrigger.models.backends import BACKENDS
    >>> BACKENDS.names()[:4]
    ['emulator', 'firmware', 'onnxruntime', 'torch']
    >>> BACKENDS.get("onnx")
    Traceback (most recent call last):
    ...
    darktrigger.replay.errors.UnknownNameError: no scoring backend named 'onnx'; did you mean 'onnxruntime'? Known: emulator, firmware, onnxruntime, torch.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

from darktrigger.models.base import SCORERS, Scorer
from darktrigger.models.card import ModelFileError, read_card, read_json
from darktrigger.replay.errors import ConfigError, UnknownNameError
from darktrigger.replay.registry import Registry

#: The entry-point group naming modules that register backends of higher layers.
ENTRY_POINT_GROUP = "darktrigger.backends"

log = logging.getLogger(__name__)

#: Backends of darktrigger's higher layers, by the module whose import registers them.
KNOWN_PLUGINS = {"emulator": "darktrigger.firmware.emulator"}
#: In a model directory: the one backend that runs it (``{"backend": NAME}``).
SOLE_BACKEND_FILE = "backend.json"


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
            self._plugins = {**KNOWN_PLUGINS,
                             **{ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}}
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
    sole = sole_backend(directory)
    if sole is not None and sole != backend:
        log.info("%s: run by the %s backend (its %s), not %s", directory, sole, SOLE_BACKEND_FILE, backend)
        backend = sole
    try:
        loader = BACKENDS.get(backend).load
    except UnknownNameError as exc:  # a setting the user gave: a configuration error
        raise ConfigError(f"{directory}: {exc.args[0]}") from None
    return loader(Path(directory), variant, threads=threads)


def sole_backend(directory: str | Path) -> str | None:
    """The backend named by the directory's ``backend.json``, or None (any backend may run it)."""
    path = Path(directory) / SOLE_BACKEND_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("backend"), str):
        raise ModelFileError(f"{path}: expected {{\"backend\": NAME}}, got {data!r}")
    return str(data["backend"])


@register_backend("torch", "the scorer's own class, in torch (or numpy for the baselines); trains too")
def _load_torch(directory: Path, variant: str | None, *, threads: int) -> Scorer:
    card = read_card(directory)
    try:
        cls = SCORERS.get(card.scorer)
    except UnknownNameError as exc:
        raise ModelFileError(f"{directory / 'card.json'}: {exc}") from None
    return cls.load(directory, variant)
