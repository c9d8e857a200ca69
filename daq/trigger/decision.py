"""A batch's trigger decisions as bit masks, and the bunch-crossing rate they are counted at.

Bit ``i`` of a decision is seed ``i`` in menu order (at most 64 seeds). Rates are counted
at the colliding-bunch crossing rate, :data:`DEFAULT_BX_RATE_MHZ` = 2544 colliding bunch
pairs × 11.2455 kHz (:mod:`darktrigger.replay.lhc`), not at the 40 MHz of every bunch slot.

    >>> import numpy as np
    >>> d = Decision(raw=np.array([3, 1], np.uint64), bits=np.array([1, 0], np.uint64),
    ...              names=("SingleMu22", "HTT280er"))
    >>> d.accepted.tolist(), d.fired("HTT280er", prescaled=False).tolist()
    ([True, False], [True, False])
    >>> round(DEFAULT_BX_RATE_MHZ, 2)
    28.61
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darktrigger.replay.lhc import COLLIDING_BX_RATE_MHZ, F_REV_HZ

#: the crossing rate rates are counted at by default: colliding bunch pairs × f_rev, MHz
DEFAULT_BX_RATE_MHZ = COLLIDING_BX_RATE_MHZ


def bunches_to_mhz(colliding_bunches: int) -> float:
    """The crossing rate (MHz) of ``colliding_bunches`` colliding bunch pairs: n × 11.2455 kHz.

    >>> round(bunches_to_mhz(2544), 4)
    28.6086
    """
    return colliding_bunches * F_REV_HZ / 1e6


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
