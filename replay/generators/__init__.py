"""Event generators, registered by name. Importing this package registers them all."""

from replay.generators.base import GENERATORS, EventGenerator, register_generator
from replay.generators import toy  # noqa: F401  (registers "toy")
from replay.generators import pythia  # noqa: F401  (registers "pythia"; pythia8mc is imported lazily)

__all__ = ["GENERATORS", "EventGenerator", "register_generator"]
