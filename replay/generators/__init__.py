"""Event generators, registered by name. Importing this package registers them all."""

from darktrigger.replay.generators import (
    pythia,  # noqa: F401  (registers "pythia"; pythia8mc is imported lazily)
    toy,  # noqa: F401  (registers "toy")
)
from darktrigger.replay.generators.base import GENERATORS, EventGenerator, register_generator

__all__ = ["GENERATORS", "EventGenerator", "register_generator"]
