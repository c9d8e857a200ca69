"""A batch's trigger decisions as bit masks, and the bunch-crossing rate they are counted at.

Bit ``i`` of a decision is seed ``i`` in menu order (at most 64 seeds).

    >>> import numpy as np
    >>> d = Decision(raw=np.array([3, 1], np.uint64), bits=np.array([1, 0], np.uint64),
    ...              names=("SingleMu22", "HTT280er"))
    >>> d.accepted.tolist(), d.fired("HTT280er", prescaled=False).tolist()
    ([True, False], [True, False])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BX_RATE_MHZ = 40.0  #: LHC bunch-crossing rate


@dataclass(frozen=True)
class Decision:
    """A batch's trigger decisions: ``raw`` before and ``bits`` after prescale, uint64 ``[N]``."""

    raw: np.ndarray
    bits: np.ndarray
    names: tuple[str, ...]

    @property
    def accepted(self) -> np.ndarray:
        """bool ``[N]``: events that at least one seed kept after its prescale."""
        return np.asarray(self.bits != 0)

    def __len__(self) -> int:
        return len(self.bits)

    def fired(self, seed: str | int, prescaled: bool = True) -> np.ndarray:
        """bool ``[N]``: events that ``seed`` (a name or bit index) fired."""
        i = self.names.index(seed) if isinstance(seed, str) else int(seed)
        mask = self.bits if prescaled else self.raw
        return np.asarray((mask >> np.uint64(i)) & np.uint64(1) != 0)
