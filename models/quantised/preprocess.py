"""The quantised models' inputs: CMSSW's 57 AXOL1TL numbers, normalised by right shifts.

The quantised scorers (:mod:`darktrigger.models.quantised.scorers`) see an event as the
anomaly triggers deployed in CMS do: the 57 integers CMSSW's ``AXOL1TLCondition`` puts
into its ``ap_fixed<18,13>`` input array (:func:`darktrigger.replay.l1units.cmssw_inputs`):
MET, 4 e/γ, 4 muons, 10 jets, each (hwPt / 2, hwEta, hwPhi), every object on its own
hardware LSBs — calorimeter objects η 0.0435 and φ 2π/144, muons η 0.010875 and φ 2π/576
(at the vertex), pT 0.5 GeV (so hwPt / 2 is in 1 GeV); φ unsigned, empty slots zero.
:func:`input_table` lists them with the shift each input gets; the model directory holds
it as ``inputs.md``.

Normalisation is a shift per input, as in AXOL1TL's ``scales.h``: ``x = in >> s`` read as
a fixed-point number, ``x = floor(in · 2^(F − s)) / 2^F``, saturated to the network's input
type ``ap_fixed<W, I>`` (default ``ap_fixed<12, 6>``: 6 fractional bits, range [−32, 32)).
No offset is subtracted, so an empty slot is exactly 0 and pT and φ stay ≥ 0; in firmware
the shift is only a choice of which wires carry the binary point. Each shift ``s`` is
fitted on background as ``round(log2(rms))`` of that input's filled entries (pooled by
object type when a slot has fewer than 20 filled events), so inputs are of order one.

All arithmetic is float32 with operations that are exact or correctly rounded the same
way in numpy, torch and onnxruntime (a multiplication, ``round``, ``floor``, a division of
integers, scaling by powers of two), and every count is an integer below 2^24, so every
backend puts an event on the same integers.

    >>> import numpy as np
    >>> obj = np.zeros((1, 19, 3), np.float32)
    >>> obj[0, 5] = (20.7, 1.0, np.pi)                     # a muon: muon LSBs
    >>> obj[0, 9] = (40.0, 1.0, np.pi)                     # a jet: calorimeter LSBs
    >>> qp = QPreprocessor.identity()
    >>> x = qp.cmssw_inputs(obj.reshape(1, 57))
    >>> x[0, 15:18].tolist(), x[0, 27:30].tolist()          # (hwPt/2, hwEta, hwPhi)
    ([20.0, 92.0, 288.0], [40.0, 23.0, 72.0])
    >>> qp.transform(obj.reshape(1, 57))[0, 27:30].tolist()  # shift 0: saturated at 32
    [31.984375, 23.0, 31.984375]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darktrigger.models.card import read_json, write_json
from darktrigger.replay.errors import SchemaError
from darktrigger.replay.events import N_FEATURES, SLOT_TYPES
from darktrigger.replay.l1units import hardware_counts_float
from darktrigger.replay.l1units import input_table as l1_input_table
from darktrigger.replay.l1units import input_table_markdown as l1_input_table_markdown

#: what ``preprocess.json`` says it holds; a file of another kind is refused
QPREPROCESS_KIND = "cmssw_inputs_shift_v2"
QPREPROCESS_FILE = "preprocess.json"
INPUTS_FILE = "inputs.md"
MIN_FILLED = 20
QUANTITIES = ("pt", "eta", "phi")


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
    def cmssw_inputs(flat: np.ndarray) -> np.ndarray:
        """CMSSW's 57 inputs (:func:`darktrigger.replay.l1units.cmssw_inputs`) as float32
        ``[N, 57]``: integers, computed with the float32 operations the torch twin repeats."""
        hw = hardware_counts_float(flat)
        hw[..., 0] = np.floor(hw[..., 0] * np.float32(0.5))
        return hw.reshape(-1, N_FEATURES)

    def scale_factors(self) -> np.ndarray:
        """``2^(F − s)`` per input, float32 ``[57]``."""
        return np.array([2.0 ** (self.frac - s) for s in self.shifts], np.float32)

    def transform(self, flat: np.ndarray) -> np.ndarray:
        """The network inputs ``[N, 57]`` float32, every value on the ``ap_fixed`` grid."""
        q = np.floor(self.cmssw_inputs(flat) * self.scale_factors())
        q = np.clip(q, self.low * 2.0**self.frac, self.high * 2.0**self.frac)
        return (q * np.float32(2.0**-self.frac)).astype(np.float32)

    @classmethod
    def fit(cls, flat: np.ndarray, width: int = 12, integer: int = 6) -> QPreprocessor:
        """Shifts ``round(log2(rms))`` of each input's filled entries on background ``flat``."""
        hw = cls.cmssw_inputs(flat)
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
                "integer": self.integer, "input_type": self.input_type, "n_fit": self.n_fit,
                "doc": "in = CMSSW's 57 AXOL1TLCondition inputs (hwPt/2, hwEta, hwPhi per slot: MET, 4 e/gamma, "
                       "4 muons (hwEtaAtVtx, hwPhiAtVtx), 10 jets; darktrigger.replay.l1units.cmssw_inputs); "
                       "x = sat(floor(in * 2^(F-shift)) / 2^F) in ap_fixed<width,integer>, F = width - integer; "
                       "see darktrigger.models.quantised.preprocess",
                "inputs": self.input_table()}

    def input_table(self) -> list[dict[str, object]]:
        """:func:`darktrigger.replay.l1units.input_table` with each input's ``shift``."""
        return [{**row, "shift": s} for row, s in zip(l1_input_table(), self.shifts, strict=True)]

    def input_table_markdown(self) -> str:
        """The 57 inputs and their shifts as a Markdown table (``inputs.md`` of a model)."""
        return (f"# The {N_FEATURES} inputs\n\n"
                "CMSSW's AXOL1TLCondition array (`ap_fixed<18,13>`), in this order; the network "
                f"reads `x = in >> shift` as `{self.input_type}`.\n\n" + l1_input_table_markdown(self.input_table()))

    @classmethod
    def from_dict(cls, data: Any, where: str = QPREPROCESS_FILE) -> QPreprocessor:
        if not isinstance(data, dict) or data.get("kind") != QPREPROCESS_KIND:
            got = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise SchemaError(f"{where}: expected quantised preprocessing of kind "
                              f"{QPREPROCESS_KIND!r}, got {got!r}; the model was made for other "
                              "inputs: train it again with this darktrigger")
        try:
            return cls(tuple(int(s) for s in data["shifts"]), int(data["width"]),
                       int(data["integer"]), int(data["n_fit"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"{where}: {exc}") from None

    def save(self, directory: str | Path) -> Path:
        """Write ``preprocess.json`` and ``inputs.md`` (the input table) into ``directory``."""
        (Path(directory) / INPUTS_FILE).write_text(self.input_table_markdown())
        return write_json(Path(directory) / QPREPROCESS_FILE, self.to_dict())

    @classmethod
    def load(cls, directory: str | Path) -> QPreprocessor:
        path = Path(directory) / QPREPROCESS_FILE
        return cls.from_dict(read_json(path), str(path))
