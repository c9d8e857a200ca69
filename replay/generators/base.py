"""What every event generator is: registered by name, seeded, yielding event batches.

The same (generator, process, n_events, seed, options) gives the same events.

    >>> import numpy as np
    >>> from darktrigger.replay.generators import GENERATORS
    >>> GENERATORS.names()
    ['pythia', 'toy']
    >>> gen = GENERATORS.get("toy")()
    >>> batches = list(gen.generate("qcd", 1000, seed=1, batch_size=400))
    >>> [len(b) for b in batches]
    [400, 400, 200]
    >>> again = next(gen.generate("qcd", 1000, seed=1))
    >>> np.array_equal(np.concatenate([b.objects for b in batches]), again.objects)
    True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

from darktrigger.replay.errors import ConfigError
from darktrigger.replay.events import ALL_PROCESSES, EventBatch
from darktrigger.replay.registry import Registry, unknown_name


class EventGenerator(ABC):
    """Base of the generators."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    processes: ClassVar[tuple[str, ...]] = ALL_PROCESSES

    def __init__(self, **options: Any) -> None:
        self.options = options

    def check_process(self, process: str) -> None:
        if process not in self.processes:
            raise ConfigError(unknown_name("process", process, self.processes, keep_order=True,
                                           missing=f"generator {self.name!r} has no process {process!r}"))

    @abstractmethod
    def generate(self, process: str, n_events: int, seed: int, *,
                 batch_size: int = 10_000, progress: bool = False) -> Iterator[EventBatch]:
        """Yield ``n_events`` events of ``process`` in batches of at most ``batch_size``."""

    def provenance(self, process: str, seed: int) -> dict[str, Any]:
        """Attributes stored with the events (generator, process, seed, settings)."""
        return {"generator": self.name, "process": process, "seed": int(seed)}


GENERATORS: Registry[type[EventGenerator]] = Registry("generator")
register_generator = GENERATORS.register
