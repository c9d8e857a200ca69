"""The quantised models' inputs: the 57 L1 numbers in hardware integer units, normalised by shifts.

The CMS Global Trigger sees each object as integers: hardware pT, η and φ counts.
The quantised scorers (:mod:`darktrigger.models.quantised.scorers`) start from the same integers, with
these least significant bits (LSBs), those of the Phase-1 calorimeter trigger objects
as the uGT receives them:

=====  ===========================  ==========================================
qty    LSB                          integer
=====  ===========================  ==========================================
pT     0.5 GeV                      ``floor(pT / 0.5)``, saturated at 2^16 − 1
η      0.0435 (= 0.087 / 2)         ``round(η / 0.0435)``, saturated at ±2^8
φ      2π / 144 (2.5°)              ``round(φ / (2π/144))`` wrapped into [−72, 72)
=====  ===========================  ==========================================

An empty slot (hardware pT 0) has η = φ = 0, as an empty object word is all zeros.
φ is rounded (not floored) to its bin so that φ = π and φ = −π fall into one bin, and
it is wrapped in integer units, so φ and φ + 2π give the same count.

Normalisation is a shift per input, as in AXOL1TL: ``x = hw >> s`` read as a fixed-point
number, ``x = floor(hw · 2^(F − s)) / 2^F``, saturated to the input type
``ap_fixed<W, I>`` (default ``ap_fixed<12, 6>``: 6 fractional bits, range [−32, 32)).
No offset is subtracted, so an empty slot is exactly 0 and pT stays ≥ 0; in firmware
the shift is only a choice of which wires carry the binary point. Each shift ``s`` is
fitted on background as ``round(log2(rms))`` of that input's filled entries (pooled by
object type when a slot has fewer than 20 filled events), so inputs are of order one.

All arithmetic is float32 with operations that are exact or correctly rounded the same
way in numpy, torch and onnxruntime (a multiplication, ``round``, ``floor``, scaling by
powers of two), so every backend puts an event on the same integers.

    >>> import numpy as np
    >>> obj = np.zeros((1, 19, 3), np.float32)
    >>> obj[0, 9] = (40.0, 1.0, np.pi)                     # a jet
    >>> qp = QPreprocessor.identity()
    >>> hw = qp.hardware_units(obj.reshape(1, 57))
    >>> hw[0, 27:30].tolist()                               # pT, η, φ counts of slot 9
    [80.0, 23.0, -72.0]
    >>> qp.transform(obj.reshape(1, 57))[0, 27:30].tolist()  # shift 0: saturated at 32
    [31.984375, 23.0, -32.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.models.card import read_json, write_json
from darktrigger.replay.errors import SchemaError
from darktrigger.replay.events import N_FEATURES, SLOT_TYPES

PT_LSB = 0.5  #: GeV per hardware pT count
ETA_LSB = 0.0435  #: η per hardware count (0.087 / 2, the calorimeter tower half-width)
PHI_BINS = 144  #: hardware φ counts per turn
PHI_LSB = 2 * math.pi / PHI_BINS
PT_MAX = 2**16 - 1  #: largest hardware pT count
ETA_MAX = 2**8  #: largest |η| count
QPREPROCESS_KIND = "l1_hw_units_shift_v1"
QPREPROCESS_FILE = "preprocess.json"
MIN_FILLED = 20
QUANTITIES = ("pt", "eta", "phi")

#: the reciprocals of the η and φ LSBs in float32: every backend multiplies by these
INV_ETA = np.float32(1 / ETA_LSB)
INV_PHI = np.float32(1 / PHI_LSB)


@dataclass(frozen=True)
class QPreprocessor:
    """Hardware units → shift-normalised fixed-point inputs ``[N, 57]`` (float32 on the grid).

    ``shifts`` is int ``[57]`` (one right shift per input, in the raw ``(pT, η, φ)``
    per-slot order); the input type is ``ap_fixed<width, integer>``.
    """

    shifts: tuple[int, ...]
    width: int = 12
    integer: int = 6
    n_fit: int = 0
    lsb: dict[str, float] = field(default_factory=lambda: {"pt": PT_LSB, "eta": ETA_LSB, "phi": PHI_LSB})

    def __post_init__(self) -> None:
        if len(self.shifts) != N_FEATURES or any(not 0 <= s <= 24 for s in self.shifts):
            raise SchemaError(f"quantised preprocessing: expected {N_FEATURES} shifts in [0, 24], "
                              f"got {list(self.shifts)}")
        if not 2 <= self.integer < self.width <= 24:
            raise SchemaError(f"quantised preprocessing: input type ap_fixed<{self.width}, "
                              f"{self.integer}> must have 2 <= integer < width <= 24")

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def input_type(self) -> str:
        return f"ap_fixed<{self.width},{self.integer}>"

    @property
    def low(self) -> float:
        return -(2.0 ** (self.integer - 1))

    @property
    def high(self) -> float:
        return 2.0 ** (self.integer - 1) - 2.0**-self.frac

    @classmethod
    def identity(cls, width: int = 12, integer: int = 6) -> QPreprocessor:
        """No shifts (for tests)."""
        return cls(tuple([0] * N_FEATURES), width, integer)

    @staticmethod
    def hardware_units(flat: np.ndarray) -> np.ndarray:
        """Integer hardware counts (as float32) ``[N, 57]``: pT, η, φ per slot."""
        flat = np.asarray(flat, np.float32).reshape(-1, N_FEATURES)
        pt = np.clip(np.floor(flat[:, 0::3] * np.float32(1 / PT_LSB)), 0, PT_MAX)
        filled = (pt > 0).astype(np.float32)
        eta = np.clip(np.round(flat[:, 1::3] * INV_ETA), -ETA_MAX, ETA_MAX) * filled
        phi = np.round(flat[:, 2::3] * INV_PHI)
        half = np.float32(PHI_BINS // 2)
        phi = (phi - np.float32(PHI_BINS) * np.floor((phi + half) / np.float32(PHI_BINS))) * filled
        out = np.empty_like(flat)
        out[:, 0::3], out[:, 1::3], out[:, 2::3] = pt, eta, phi
        return out + np.float32(0)  # -0 → 0

    def scale_factors(self) -> np.ndarray:
        """``2^(F − s)`` per input, float32 ``[57]``."""
        return np.array([2.0 ** (self.frac - s) for s in self.shifts], np.float32)

    def transform(self, flat: np.ndarray) -> np.ndarray:
        """The network inputs ``[N, 57]`` float32, every value on the ``ap_fixed`` grid."""
        hw = self.hardware_units(flat)
        q = np.floor(hw * self.scale_factors())
        q = np.clip(q, self.low * 2.0**self.frac, self.high * 2.0**self.frac)
        return (q * np.float32(2.0**-self.frac)).astype(np.float32)

    @classmethod
    def fit(cls, flat: np.ndarray, width: int = 12, integer: int = 6) -> QPreprocessor:
        """Shifts ``round(log2(rms))`` of each input's filled entries on background ``flat``."""
        hw = cls.hardware_units(flat)
        filled = hw[:, 0::3] > 0
        shifts = np.zeros(N_FEATURES, int)
        for q in range(3):
            vals = hw[:, q::3].astype(np.float64)
            for kind in dict.fromkeys(SLOT_TYPES):
                cols = [i for i, t in enumerate(SLOT_TYPES) if t == kind]
                pooled = vals[:, cols][filled[:, cols]]
                for c in cols:
                    own = vals[filled[:, c], c]
                    sample = own if len(own) >= MIN_FILLED else pooled
                    rms = float(np.sqrt(np.mean(sample**2))) if len(sample) else 1.0
                    shifts[3 * c + q] = int(np.clip(round(math.log2(max(rms, 1.0))), 0, 24))
        return cls(tuple(int(s) for s in shifts), width, integer, n_fit=len(hw))

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"kind": QPREPROCESS_KIND, "shifts": list(self.shifts), "width": self.width,
                "integer": self.integer, "input_type": self.input_type, "lsb": dict(self.lsb),
                "n_fit": self.n_fit,
                "doc": "hw = floor(pT/0.5), round(eta/0.0435), round(phi/(2pi/144)) wrapped to "
                       "[-72,72), eta=phi=0 for empty slots; x = sat(floor(hw * 2^(F-shift)) / 2^F) "
                       "in ap_fixed<width,integer>, F = width - integer; see darktrigger.models.quantised.preprocess"}

    @classmethod
    def from_dict(cls, data: Any, where: str = QPREPROCESS_FILE) -> QPreprocessor:
        if not isinstance(data, dict) or data.get("kind") != QPREPROCESS_KIND:
            got = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise SchemaError(f"{where}: expected quantised preprocessing of kind "
                              f"{QPREPROCESS_KIND!r}, got {got!r}")
        try:
            return cls(tuple(int(s) for s in data["shifts"]), int(data["width"]),
                       int(data["integer"]), int(data["n_fit"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"{where}: {exc}") from None

    def save(self, directory: str | Path) -> Path:
        return write_json(Path(directory) / QPREPROCESS_FILE, self.to_dict())

    @classmethod
    def load(cls, directory: str | Path) -> QPreprocessor:
        path = Path(directory) / QPREPROCESS_FILE
        return cls.from_dict(read_json(path), str(path))
