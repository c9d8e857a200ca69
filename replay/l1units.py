"""The L1 hardware units: the integers CMS's Global Trigger sees, and the 57 inputs of its anomaly triggers.

Every L1 object reaches the Global Trigger (uGT) as integer counts: hardware pT, η and φ,
each with a least significant bit (LSB) fixed by the system that made it. This module is
the one home of those units. It turns the event model's float ``objects`` (pT in GeV, η, φ
in rad per slot: MET, 4 e/γ, 4 μ, 10 jets; :data:`darktrigger.replay.events.SLOTS`) into

* :func:`hardware_counts`: int32 ``[N, 19, 3]`` (hwPt, hwEta, hwPhi) per slot, and
* :func:`cmssw_inputs`: int32 ``[N, 57]``, exactly the numbers CMSSW's
  ``L1Trigger/L1TGlobal/src/AXOL1TLCondition.cc`` writes into its ``ap_fixed<18,13>``
  input array before it calls the model: MET, 4 e/γ, 4 muons, 10 jets, each
  (hwPt / 2, hwEta, hwPhi), pT-ordered within a type, empty slots zero.

Where each convention comes from (facts read from CMSSW, no code taken over):

================  ==========================================================================
object            word (CMSSW unpackers, ``EventFilter/L1TRawToDigi/.../implementations_stage2``)
================  ==========================================================================
e/γ               hwPt 9 bits (``& 0x1FF``); hwEta 8-bit two's complement (7-bit magnitude,
                  sign bit: −128…127); hwPhi 8 bits, 0…143 used (``EGammaUnpacker.cc``)
jet               hwPt 11 bits (``& 0x7FF``); hwEta, hwPhi as e/γ (``JetUnpacker.cc``)
MET               the EtSum of type ``kMissingEt``: hwPt 12 bits (``& 0xFFF``), hwPhi 8 bits
                  0…143, no η (``EtSumUnpacker.cc``)
muon              uGMT output: hwPt 9 bits (``ptMask_ = 0x1FF``); hwEtaAtVtx 8-bit magnitude
                  plus sign, −256…255; hwPhiAtVtx 10 bits, 0…575 used
                  (``L1Trigger/L1TMuon/interface/MuonRawDigiTranslator.h``)
================  ==========================================================================

LSBs: pT 0.5 GeV for all; calorimeter objects and sums η 0.0435 (0.087 / 2), φ 2π/144
(``CaloTools::kGTEtaLSB``; ``CaloTools::gtPhi`` adds 2π to a negative φ, so calo hwPhi is
unsigned, 0…143); muons η 0.010875, φ 2π/576, unsigned 0…575. η is signed. Muons use the
coordinates extrapolated to the vertex (``hwEtaAtVtx``, ``hwPhiAtVtx``), as issue 16's fact
list says; the CMSSW versions of ``AXOL1TLCondition.cc`` read here call ``hwEta()``/``hwPhi()``,
which have the same LSBs and ranges. The event model's muon (η, φ) is the direction at the
vertex, so the at-vertex counts are the ones it defines.

Floats → counts, in float32 arithmetic that torch and onnxruntime repeat bit for bit
(:class:`darktrigger.models.quantised.scorers`' twin): pT is floored to 0.5 GeV
(``floor(2 pT)``), η and φ are rounded to the nearest count (half to even), φ is wrapped
into the unsigned range (φ and φ + 2π, π and −π give one count), and each count saturates
at its word: a jet of 2 TeV is hwPt 2047. An empty slot (hwPt 0) is all zeros, as an empty
object word is; MET has η 0. ``cmssw_inputs`` then halves hwPt with C++ integer division
(hwPt ≥ 0, so a floor: 7 → 3); every value fits ``ap_fixed<18,13>`` (−4096…4095) without
wrapping.

    >>> import numpy as np
    >>> obj = np.zeros((1, 19, 3), np.float32)
    >>> obj[0, 0] = (30.0, 0.0, -0.5)          # MET
    >>> obj[0, 5] = (20.7, 1.0, np.pi)         # a muon: muon LSBs
    >>> obj[0, 9] = (40.0, 1.0, np.pi)         # a jet: calorimeter LSBs
    >>> hardware_counts(obj)[0, [0, 5, 9]].tolist()
    [[60, 0, 133], [41, 92, 288], [80, 23, 72]]
    >>> cmssw_inputs(obj)[0, [0, 1, 2, 15, 16, 17, 27, 28, 29]].tolist()
    [30, 0, 133, 20, 92, 288, 40, 23, 72]
    >>> input_table()[15]
    {'index': 15, 'slot': 'muon0', 'quantity': 'hwPt/2', 'unit': 'GeV', 'lsb': 1.0, 'range': '0..255'}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from darktrigger.replay.errors import SchemaError
from darktrigger.replay.events import N_FEATURES, N_SLOTS, SLOT_TYPES, SLOTS

PT_LSB = 0.5  #: GeV per hwPt count, every L1 object and sum
CALO_ETA_LSB = 0.0435  #: η per hwEta count of e/γ, jets (0.087 / 2, half a calorimeter tower)
CALO_PHI_LSB = 2 * math.pi / 144  #: rad per hwPhi count of e/γ, jets and sums
MUON_ETA_LSB = 0.010875  #: η per hwEtaAtVtx count of a uGMT muon
MUON_PHI_LSB = 2 * math.pi / 576  #: rad per hwPhiAtVtx count of a uGMT muon
#: the range of CMSSW's ``ap_fixed<18,13>`` input type, in integers
INPUT_MIN, INPUT_MAX = -(2**12), 2**12 - 1


@dataclass(frozen=True)
class ObjectFormat:
    """The uGT word of one object type: field names, LSBs and widths (module table)."""

    kind: str
    pt_bits: int
    eta_bits: int  #: two's complement width; 0 = no η (the MET)
    phi_bins: int  #: counts per turn; hwPhi is unsigned, 0 … phi_bins − 1
    eta_lsb: float
    phi_lsb: float
    eta_name: str = "hwEta"
    phi_name: str = "hwPhi"

    @property
    def pt_max(self) -> int:
        return 2**self.pt_bits - 1

    @property
    def eta_range(self) -> tuple[int, int]:
        if self.eta_bits == 0:
            return 0, 0
        return -(2 ** (self.eta_bits - 1)), 2 ** (self.eta_bits - 1) - 1


#: the uGT words, by the event model's slot kinds
FORMATS: dict[str, ObjectFormat] = {
    "met": ObjectFormat("met", 12, 0, 144, CALO_ETA_LSB, CALO_PHI_LSB),
    "egamma": ObjectFormat("egamma", 9, 8, 144, CALO_ETA_LSB, CALO_PHI_LSB),
    "muon": ObjectFormat("muon", 9, 9, 576, MUON_ETA_LSB, MUON_PHI_LSB, "hwEtaAtVtx", "hwPhiAtVtx"),
    "jet": ObjectFormat("jet", 11, 8, 144, CALO_ETA_LSB, CALO_PHI_LSB),
}
assert set(FORMATS) == set(SLOTS)


def _per_slot(values: list[float], dtype: type = np.float32) -> np.ndarray:
    return np.array(values, dtype)


#: per-slot constants ``[19]``, float32: what every backend multiplies and clips with
SLOT_PT_MAX = _per_slot([FORMATS[k].pt_max for k in SLOT_TYPES])
SLOT_ETA_MIN = _per_slot([FORMATS[k].eta_range[0] for k in SLOT_TYPES])
SLOT_ETA_MAX = _per_slot([FORMATS[k].eta_range[1] for k in SLOT_TYPES])
SLOT_INV_ETA = _per_slot([0.0 if FORMATS[k].eta_bits == 0 else 1 / FORMATS[k].eta_lsb for k in SLOT_TYPES])
SLOT_INV_PHI = _per_slot([1 / FORMATS[k].phi_lsb for k in SLOT_TYPES])
SLOT_PHI_BINS = _per_slot([FORMATS[k].phi_bins for k in SLOT_TYPES])
SLOT_ETA_LSB = np.array([FORMATS[k].eta_lsb for k in SLOT_TYPES])
SLOT_PHI_LSB = np.array([FORMATS[k].phi_lsb for k in SLOT_TYPES])


def _objects(features: np.ndarray) -> np.ndarray:
    arr = np.asarray(features)
    if arr.ndim == 2 and arr.shape[1] == N_FEATURES:
        arr = arr.reshape(-1, N_SLOTS, 3)
    if arr.ndim != 3 or arr.shape[1:] != (N_SLOTS, 3):
        raise SchemaError(f"L1 hardware units: expected features [N, {N_FEATURES}] or [N, {N_SLOTS}, 3] "
                          f"(pT, η, φ per slot), got shape {list(arr.shape)}")
    return arr.astype(np.float32, copy=False)


def hardware_counts_float(features: np.ndarray) -> np.ndarray:
    """:func:`hardware_counts` as float32 ``[N, 19, 3]`` (integers < 2^24, so exact): the
    arithmetic itself, which the torch twin of the quantised scorers repeats op for op."""
    obj = _objects(features)
    pt = np.clip(np.floor(obj[..., 0] * np.float32(1 / PT_LSB)), 0, SLOT_PT_MAX)
    filled = (pt > 0).astype(np.float32)
    eta = np.clip(np.round(obj[..., 1] * SLOT_INV_ETA), SLOT_ETA_MIN, SLOT_ETA_MAX) * filled
    phi = np.round(obj[..., 2] * SLOT_INV_PHI)
    phi = (phi - SLOT_PHI_BINS * np.floor(phi / SLOT_PHI_BINS)) * filled
    out = np.stack([pt, eta, phi], axis=-1).astype(np.float32)
    return out + np.float32(0)  # -0 → 0


def hardware_counts(features: np.ndarray) -> np.ndarray:
    """Float objects ``[N, 57]`` or ``[N, 19, 3]`` (GeV, η, rad) → int32 ``[N, 19, 3]``
    (hwPt, hwEta, hwPhi) per slot, each slot on its own LSBs and word widths (module doc);
    muon slots hold (hwPt, hwEtaAtVtx, hwPhiAtVtx)."""
    return hardware_counts_float(features).astype(np.int32)


def cmssw_inputs(features: np.ndarray) -> np.ndarray:
    """Float objects ``[N, 57]`` or ``[N, 19, 3]`` → int32 ``[N, 57]``: the 57 numbers
    CMSSW's ``AXOL1TLCondition`` puts into its ``ap_fixed<18,13>`` array, (hwPt / 2
    (C++ integer division), hwEta, hwPhi) per slot in the order MET, e/γ, μ, jets."""
    hw = hardware_counts(features)
    hw[..., 0] //= 2  # hwPt ≥ 0: C++'s truncating division is a floor
    return hw.reshape(-1, N_FEATURES)


def from_counts(counts: np.ndarray) -> np.ndarray:
    """int ``[N, 19, 3]`` hardware counts → float32 objects on the LSB grids (pT in GeV,
    η, φ in [−π, π)), so that :func:`hardware_counts` gives the counts back (for counts
    within the words; empty slots all zeros)."""
    c = np.asarray(counts)
    if c.ndim != 3 or c.shape[1:] != (N_SLOTS, 3):
        raise SchemaError(f"L1 hardware units: expected counts [N, {N_SLOTS}, 3], got shape {list(c.shape)}")
    pt = c[..., 0] * PT_LSB
    eta = c[..., 1] * SLOT_ETA_LSB
    phi = c[..., 2] * SLOT_PHI_LSB
    phi = (phi + math.pi) % (2 * math.pi) - math.pi
    return np.stack([pt, eta, phi], axis=-1).astype(np.float32)


_UNITS = {"pt": "GeV", "eta": "1", "phi": "rad"}
_COLUMNS = ("index", "slot", "quantity", "unit", "lsb", "range")
_COLUMNS_SHOWN = ("index", "slot", "quantity", "unit", "LSB", "range")


def input_table() -> list[dict[str, object]]:
    """The 57 inputs in CMSSW's order: one dict per input with ``index``, ``slot``
    (``met``, ``egamma0`` … ``jet9``), ``quantity`` (the l1t field: ``hwPt/2``, ``hwEta``,
    ``hwPhiAtVtx``…), ``unit`` of the physical value, ``lsb`` (that unit per count; 1 GeV for
    hwPt/2) and ``range`` of the integer (``lo..hi``)."""
    rows: list[dict[str, object]] = []
    for slot, kind in enumerate(SLOT_TYPES):
        fmt = FORMATS[kind]
        name = kind if kind == "met" else f"{kind}{slot - SLOTS[kind].start}"
        eta_lo, eta_hi = fmt.eta_range
        cells = [("pt", "hwPt/2", 2 * PT_LSB, f"0..{fmt.pt_max // 2}"),
                 ("eta", fmt.eta_name if fmt.eta_bits else "0 (no η)", fmt.eta_lsb if fmt.eta_bits else 0.0,
                  f"{eta_lo}..{eta_hi}"),
                 ("phi", fmt.phi_name, fmt.phi_lsb, f"0..{fmt.phi_bins - 1}")]
        for q, (unit, quantity, lsb, rng) in enumerate(cells):
            rows.append({"index": 3 * slot + q, "slot": name, "quantity": quantity, "unit": _UNITS[unit],
                         "lsb": lsb, "range": rng})
    return rows


def input_table_markdown(rows: list[dict[str, object]] | None = None) -> str:
    """:func:`input_table` (or ``rows`` of its form, with more keys as more columns, such as a
    model's ``shift``) as a Markdown table, for model cards and firmware READMEs."""
    rows = input_table() if rows is None else rows
    extra = [k for k in rows[0] if k not in _COLUMNS] if rows else []
    lines = ["| " + " | ".join([*_COLUMNS_SHOWN, *extra]) + " |",
             "|---:|---|---|---|---:|---|" + "---:|" * len(extra)]
    for r in rows:
        lsb = float(r["lsb"])  # type: ignore[arg-type]
        shown = "—" if lsb == 0 else (f"2π/{round(2 * math.pi / lsb)}" if r["unit"] == "rad" else f"{lsb:g}")
        cells = [r["index"], r["slot"], r["quantity"], r["unit"], shown, r["range"], *(r[k] for k in extra)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
