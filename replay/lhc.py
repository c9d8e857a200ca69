"""LHC running conditions: colliding bunches, luminosity, pile-up and the crossing rate.

The trigger sees every *colliding* bunch crossing: with 2544 colliding bunch pairs (of
3564 slots) and the revolution frequency 11.245 kHz that is 28.6 MHz, not 40 MHz. The
mean number of inelastic pp interactions per crossing (pile-up) is

    μ = L · σ_inel / (n_bunches · f_rev),

which for L = 2.0e34 cm⁻²s⁻¹ and σ_inel ≈ 80 mb gives μ ≈ 56 — CMS ran at μ ≈ 56–60 in
2024–25 (REFERENCES: a 2025 fill measured 59.7).

    >>> from darktrigger.replay.lhc import LHCConditions
    >>> run3 = LHCConditions()
    >>> round(run3.crossing_rate_hz / 1e6, 2), round(run3.pileup, 1)
    (28.61, 55.9)
    >>> round(LHCConditions(luminosity=1.0e34).pileup, 1)
    28.0
    >>> round(LHCConditions.from_pileup(60).luminosity / 1e34, 3)
    2.146
    >>> round(run3.rate_hz(sigma_pb=20_000.0), 1)        # a 20 nb process at 2.0e34: Hz
    400.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from darktrigger.replay.errors import ConfigError

#: LHC revolution frequency (Hz)
F_REV_HZ = 11_245.5
#: bunch slots in one orbit (25 ns spacing)
BUNCH_SLOTS = 3564
#: colliding bunch pairs at CMS in the 2024–25 physics fills
COLLIDING_BUNCHES = 2544
#: inelastic pp cross section at 13.6 TeV used for pile-up, in mb
SIGMA_INEL_MB = 80.0
#: the instantaneous luminosity of the Run-3 levelled fills the example menu is for, cm⁻²s⁻¹
RUN3_LUMINOSITY = 2.0e34
#: the colliding-bunch crossing rate, MHz (2544 × 11.2455 kHz)
COLLIDING_BX_RATE_MHZ = COLLIDING_BUNCHES * F_REV_HZ / 1e6
#: every bunch slot, MHz (what "40 MHz" means; only colliding ones make collisions)
ALL_SLOTS_BX_RATE_MHZ = BUNCH_SLOTS * F_REV_HZ / 1e6

_MB_TO_CM2 = 1e-27
_PB_TO_CM2 = 1e-36


@dataclass(frozen=True)
class LHCConditions:
    """Luminosity (cm⁻²s⁻¹), colliding bunches and σ_inel (mb): pile-up and rates follow."""

    luminosity: float = RUN3_LUMINOSITY
    colliding_bunches: int = COLLIDING_BUNCHES
    sigma_inel_mb: float = SIGMA_INEL_MB

    def __post_init__(self) -> None:
        if not (self.luminosity > 0 and 0 < self.colliding_bunches <= BUNCH_SLOTS and self.sigma_inel_mb > 0):
            raise ConfigError(f"LHC conditions need luminosity > 0, 0 < colliding_bunches <= {BUNCH_SLOTS} "
                              f"and sigma_inel_mb > 0; got {self}")

    @classmethod
    def from_pileup(cls, pileup: float, colliding_bunches: int = COLLIDING_BUNCHES,
                    sigma_inel_mb: float = SIGMA_INEL_MB) -> LHCConditions:
        """The luminosity that gives mean pile-up ``pileup``."""
        if not pileup > 0:
            raise ConfigError(f"pile-up must be > 0, got {pileup!r}")
        lumi = pileup * colliding_bunches * F_REV_HZ / (sigma_inel_mb * _MB_TO_CM2)
        return cls(lumi, colliding_bunches, sigma_inel_mb)

    @property
    def crossing_rate_hz(self) -> float:
        """Colliding bunch crossings per second."""
        return self.colliding_bunches * F_REV_HZ

    @property
    def pileup(self) -> float:
        """Mean inelastic interactions per colliding crossing, μ."""
        return self.luminosity * self.sigma_inel_mb * _MB_TO_CM2 / self.crossing_rate_hz

    def rate_hz(self, sigma_pb: float) -> float:
        """The rate (Hz) of a process of cross section ``sigma_pb`` at this luminosity."""
        return sigma_pb * _PB_TO_CM2 * self.luminosity

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"crossing_rate_hz": self.crossing_rate_hz, "pileup": self.pileup}
