"""Trigger seeds: one condition on an event each, registered by type like readers and scorers.

A seed answers ``fires(columns) -> bool[N]`` for a batch (an
:class:`~darktrigger.replay.events.EventBatch` or a mapping of columns), before any prescale. The
menu (:mod:`darktrigger.daq.trigger.menu`) builds seeds from YAML by their ``type``:

==============  ====================================  ==========================================
type            keys (GeV; η is |η|)                  fires when
==============  ====================================  ==========================================
``single_mu``   ``pt_min``, ``eta_max``               a muon with pT ≥ pt_min (and |η| ≤ eta_max)
``double_mu``   ``pt_min: [lead, sub]``, ``eta_max``  two muons: one ≥ lead, another ≥ sub
``single_eg``   as single_mu                          an e/γ object (slots 1–4)
``double_eg``   as double_mu                          two e/γ objects
``single_jet``  as single_mu                          a jet (slots 9–18)
``double_jet``  as double_mu                          two jets
``ht``          ``ht_min``, ``jet_pt_min`` (30),      HT ≥ ht_min, HT = Σ pT of jets with
                ``jet_eta_max`` (2.4)                 pT > jet_pt_min and |η| < jet_eta_max
``met``         ``met_min``                           MET (slot 0) ≥ met_min
``anomaly``     ``model``, ``threshold`` or           ``score/<model>`` > threshold
                ``rate_khz``
``zero_bias``   (none)                                every event (use it with a prescale)
==============  ====================================  ==========================================

Object thresholds are inclusive (``≥``), as the CMS L1 seed names read (SingleMu22 is
pT ≥ 22 GeV); anomaly thresholds are strict (``>``), as :mod:`darktrigger.models.thresholds`
calibrates them. Empty slots (pT = 0) never pass, since every pT threshold is positive.

    >>> import numpy as np
    >>> from darktrigger.daq.trigger.seeds import make_seed
    >>> objects = np.zeros((2, 19, 3), np.float32)
    >>> objects[0, 5] = (25.0, 0.3, 1.0)           # one 25 GeV muon in event 0
    >>> make_seed("SingleMu22", "single_mu", {"pt_min": 22}).fires({"objects": objects})
    array([ True, False])

Prescales are applied by the menu, but decided here, per event, by
:func:`prescale_pass`: a hash of the event identity (run, lumi, event) and the seed's
name, so the same event gets the same decision whatever the batch it arrives in.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from darktrigger.replay.errors import ConfigError, SchemaError, UnknownNameError
from darktrigger.replay.events import SLOTS, EventBatch
from darktrigger.replay.registry import Registry

Columns = EventBatch | Mapping[str, np.ndarray]

#: Keys every seed takes, handled by the menu rather than by the seed.
COMMON_KEYS = ("name", "type", "prescale")


def _positive(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive number (GeV for thresholds), got {value!r}")
    return value  # an int stays an int, so that a written menu reads as it was given


def _optional_positive(where: str, key: str, value: Any) -> float | None:
    return None if value is None else _positive(where, key, value)


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
    return value


def _pt_pair(where: str, key: str, value: Any) -> tuple[float, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        t = _positive(where, key, value)
        return (t, t)
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"{where}: {key} must be two thresholds [leading, subleading] in GeV "
                          f"(or one for both), got {value!r}")
    a, b = (_positive(where, key, v) for v in value)
    return (max(a, b), min(a, b))


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _mapping(where: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
    return dict(value)


_REQUIRED = object()


class Seed(ABC):
    """Base of every seed. ``keys`` maps each YAML key to (parser, default or required).

    The registry sets the class attribute ``name`` to the seed type; an instance's
    ``name`` is its name in the menu (``SingleMu22``) and ``seed_type`` its type.
    """

    name: str
    seed_type: ClassVar[str]
    description: ClassVar[str] = ""
    keys: ClassVar[Mapping[str, tuple[Callable[[str, str, Any], Any], Any]]] = {}

    def __init__(self, name: str, params: Mapping[str, Any], where: str = "menu") -> None:
        self.name = name
        self.where = f"{where}, seed {name!r}"
        unknown = [k for k in params if k not in self.keys]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, [*self.keys, *COMMON_KEYS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ConfigError(f"{self.where}: unknown key {key!r} for a {self.seed_type} seed{hint} "
                              f"It takes {', '.join([*self.keys, 'prescale']) or 'prescale only'}")
        self.given = frozenset(params)
        self.params: dict[str, Any] = {}
        for key, (parse, default) in self.keys.items():
            if key in params:
                self.params[key] = parse(self.where, key, params[key])
            elif default is _REQUIRED:
                raise ConfigError(f"{self.where}: a {self.seed_type} seed needs {key!r} "
                                  f"({self.describe_key(key)})")
            else:
                self.params[key] = default
        self.check()

    def check(self) -> None:  # noqa: B027 - a hook, empty unless a seed needs it
        """Cross-key checks after parsing (raise ConfigError naming ``self.where``)."""

    @classmethod
    def describe_key(cls, key: str) -> str:
        return {"pt_min": "a pT threshold in GeV", "ht_min": "an HT threshold in GeV",
                "met_min": "a MET threshold in GeV", "model": "a model named under models:"
                }.get(key, "a value")

    @property
    def columns(self) -> tuple[str, ...]:
        """The batch columns :meth:`fires` reads."""
        return ("objects",)

    @abstractmethod
    def fires(self, columns: Columns) -> np.ndarray:
        """bool ``[N]``: whether each event passes this seed's condition (before prescale)."""

    def config(self) -> dict[str, Any]:
        """The seed's keys as YAML holds them (defaults not given left out), without name/type."""
        out: dict[str, Any] = {}
        for key, (_, default) in self.keys.items():
            value = self.params[key]
            if key not in self.given and value == default:
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.config()})"


SEEDS: Registry[type[Seed]] = Registry("seed type")


def register_seed(seed_type: str) -> Callable[[type[Seed]], type[Seed]]:
    """Class decorator: register a seed class under its YAML ``type``."""
    add = SEEDS.register(seed_type)

    def decorate(cls: type[Seed]) -> type[Seed]:
        cls.seed_type = seed_type
        return add(cls)

    return decorate


def make_seed(name: str, seed_type: str, params: Mapping[str, Any], where: str = "menu") -> Seed:
    """A seed of the registered ``seed_type``; ConfigError naming the nearest types if unknown."""
    try:
        cls = SEEDS.get(seed_type)
    except UnknownNameError as exc:
        raise ConfigError(f"{where}, seed {name!r}: type {seed_type!r}: {exc}") from None
    return cls(name, params, where)


def objects_of(columns: Columns, where: str) -> np.ndarray:
    """The ``objects`` column ``[N, 19, 3]``, or a SchemaError naming ``where``."""
    if "objects" not in columns:
        raise SchemaError(f"{where} needs column 'objects' (float32 [N, 19, 3]); the batch has "
                          f"{', '.join(map(str, _names(columns))) or 'no columns'}")
    return np.asarray(columns["objects"])


def _names(columns: Columns) -> list[str]:
    return list(columns.columns if isinstance(columns, EventBatch) else columns)


# -- object seeds -----------------------------------------------------------------------
class ObjectSeed(Seed):
    """At least ``multiplicity`` objects of one type above pT thresholds, within |η| ≤ eta_max."""

    kind: ClassVar[str]
    multiplicity: ClassVar[int] = 1

    def slots(self, objects: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """For each slot of the type: pT ``[N]`` and whether |η| ≤ eta_max (None: no cut)."""
        eta_max = self.params["eta_max"]
        # slot by slot on 1-D views: no [N, slots] temporaries to reduce (the trigger's cost
        # per event: BENCHMARKS.md, "Pipeline end to end")
        for slot in range(SLOTS[self.kind].start, SLOTS[self.kind].stop):
            eta_ok = None if eta_max is None else np.abs(objects[:, slot, 1]) <= np.float32(eta_max)
            yield objects[:, slot, 0], eta_ok

    def fires(self, columns: Columns) -> np.ndarray:
        objects = objects_of(columns, self.where)
        n = len(objects)
        if self.multiplicity == 1:
            fired = np.zeros(n, dtype=bool)
            for pt, eta_ok in self.slots(objects):
                ok = pt >= np.float32(self.params["pt_min"])
                fired |= ok if eta_ok is None else ok & eta_ok
            return fired
        lead, sub = (np.float32(t) for t in self.params["pt_min"])
        # two distinct objects, one >= lead and another >= sub (lead >= sub)
        has_lead = np.zeros(n, dtype=bool)
        n_sub = np.zeros(n, dtype=np.uint8)
        for pt, eta_ok in self.slots(objects):
            a, b = pt >= lead, pt >= sub
            if eta_ok is not None:
                a &= eta_ok
                b &= eta_ok
            has_lead |= a
            n_sub += b
        return has_lead & (n_sub >= 2)


_SINGLE = {"pt_min": (_positive, _REQUIRED), "eta_max": (_optional_positive, None)}
_DOUBLE = {"pt_min": (_pt_pair, _REQUIRED), "eta_max": (_optional_positive, None)}


@register_seed("single_mu")
class SingleMuSeed(ObjectSeed):
    """A muon above pT_min: ``{type: single_mu, pt_min: 22, eta_max: 2.4}``."""

    kind, keys = "muon", _SINGLE


@register_seed("double_mu")
class DoubleMuSeed(ObjectSeed):
    """Two muons: ``{type: double_mu, pt_min: [15, 7]}``."""

    kind, keys, multiplicity = "muon", _DOUBLE, 2


@register_seed("single_eg")
class SingleEGSeed(ObjectSeed):
    """An e/γ object above pT_min: ``{type: single_eg, pt_min: 36, eta_max: 2.5}``."""

    kind, keys = "egamma", _SINGLE


@register_seed("double_eg")
class DoubleEGSeed(ObjectSeed):
    """Two e/γ objects: ``{type: double_eg, pt_min: [25, 12]}``."""

    kind, keys, multiplicity = "egamma", _DOUBLE, 2


@register_seed("single_jet")
class SingleJetSeed(ObjectSeed):
    """A jet above pT_min: ``{type: single_jet, pt_min: 180}``."""

    kind, keys = "jet", _SINGLE


@register_seed("double_jet")
class DoubleJetSeed(ObjectSeed):
    """Two jets: ``{type: double_jet, pt_min: [150, 150], eta_max: 2.5}``."""

    kind, keys, multiplicity = "jet", _DOUBLE, 2


# -- energy sums ------------------------------------------------------------------------
def scalar_ht(objects: np.ndarray, jet_pt_min: float = 30.0, jet_eta_max: float = 2.4) -> np.ndarray:
    """float64 ``[N]``: HT = Σ pT of jets with pT > jet_pt_min and |η| < jet_eta_max (GeV).

    Summed slot by slot in float64: the sum of ten float32 pT is then exact, and its
    value cannot depend on how numpy would order a reduction for a batch's layout.
    """
    ht = np.zeros(len(objects), dtype=np.float64)
    for slot in range(SLOTS["jet"].start, SLOTS["jet"].stop):
        pt = objects[:, slot, 0]
        sel = (pt > np.float32(jet_pt_min)) & (np.abs(objects[:, slot, 1]) < np.float32(jet_eta_max))
        ht += np.where(sel, pt, np.float32(0))
    return ht


@register_seed("ht")
class HTSeed(Seed):
    """Scalar jet-pT sum: ``{type: ht, ht_min: 360, jet_pt_min: 30, jet_eta_max: 2.4}``."""

    keys = {"ht_min": (_positive, _REQUIRED), "jet_pt_min": (_positive, 30.0),
            "jet_eta_max": (_positive, 2.4)}

    def fires(self, columns: Columns) -> np.ndarray:
        ht = scalar_ht(objects_of(columns, self.where), self.params["jet_pt_min"],
                       self.params["jet_eta_max"])
        return np.asarray(ht >= self.params["ht_min"])


@register_seed("met")
class METSeed(Seed):
    """Missing transverse energy (slot 0): ``{type: met, met_min: 90}``."""

    keys = {"met_min": (_positive, _REQUIRED)}

    def fires(self, columns: Columns) -> np.ndarray:
        met = objects_of(columns, self.where)[:, 0, 0]
        return np.asarray(met >= np.float32(self.params["met_min"]))


@register_seed("zero_bias")
class ZeroBiasSeed(Seed):
    """Every event, e.g. ``{type: zero_bias, prescale: 10000}`` for a zero-bias stream."""

    keys = {}

    @property
    def columns(self) -> tuple[str, ...]:
        return ()

    def fires(self, columns: Columns) -> np.ndarray:
        n = len(columns) if isinstance(columns, EventBatch) else len(next(iter(columns.values())))
        return np.ones(n, dtype=bool)


# -- anomaly ----------------------------------------------------------------------------
def score_column(model: str) -> str:
    """The column a model's scores travel in: ``score/<model>``."""
    return f"score/{model}"


@register_seed("anomaly")
class AnomalySeed(Seed):
    """``score(model) > threshold``; the threshold given, or calibrated from ``rate_khz``.

    ``{type: anomaly, model: vae, threshold: 12.5}`` or ``{type: anomaly, model: vae,
    rate_khz: 5}`` (uncalibrated until ``darktrigger menu calibrate``). ``rate_khz`` is
    the seed's rate before its prescale. A calibrated seed keeps ``rate_khz`` and a
    ``calibration`` record (sample, events, uncertainty) so that the origin stays visible.
    """

    keys = {"model": (_text, _REQUIRED), "threshold": (_number, None),
            "rate_khz": (_positive, None), "calibration": (_mapping, None)}

    def check(self) -> None:
        if self.params["threshold"] is None and self.params["rate_khz"] is None:
            raise ConfigError(f"{self.where}: an anomaly seed needs 'threshold' (a score) or "
                              f"'rate_khz' (a target rate, calibrated by `darktrigger menu calibrate`)")

    @property
    def model(self) -> str:
        return str(self.params["model"])

    @property
    def threshold(self) -> float | None:
        return self.params["threshold"]

    @property
    def calibrated(self) -> bool:
        return self.params["threshold"] is not None

    @property
    def columns(self) -> tuple[str, ...]:
        return (score_column(self.model),)

    def fires(self, columns: Columns) -> np.ndarray:
        col = score_column(self.model)
        if col not in columns:
            raise SchemaError(f"{self.where} needs column {col!r} (model {self.model!r} scores, "
                              f"float32 [N]); the batch has {', '.join(_names(columns))}")
        if self.threshold is None:
            raise ConfigError(f"{self.where}: no threshold yet, only rate_khz "
                              f"{self.params['rate_khz']:g}; run `darktrigger menu calibrate`")
        return np.asarray(np.asarray(columns[col]) > self.threshold)


# -- prescales --------------------------------------------------------------------------
_U64 = np.uint64
_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return np.asarray(z ^ (z >> _U64(31)))


def event_hash(run: np.ndarray, lumi: np.ndarray, event: np.ndarray) -> np.ndarray:
    """uint64 ``[N]``: a well-mixed hash of each event's identity (run, lumi, event)."""
    key = (np.asarray(run).astype(_U64) << _U64(32)) | np.asarray(lumi).astype(_U64)
    return _splitmix64(_splitmix64(key) ^ np.asarray(event).astype(_U64))


def seed_salt(name: str) -> int:
    """A stable 64-bit number for a seed name (blake2b), so seeds prescale independently."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def prescale_pass(hashes: np.ndarray, seed_name: str, prescale: float) -> np.ndarray:
    """bool ``[N]``: which events a seed with this prescale keeps, from :func:`event_hash`.

    Prescale 1 keeps every event, 0 none (the seed is off), p > 1 the events whose
    hash with the seed's salt falls in the lowest 1/p of the 64-bit range: a fraction
    1/p statistically (binomial), not exactly, and the same decision for the same event
    and seed name wherever and in whatever order it is seen. Non-integer prescales
    (1.5) work the same way.
    """
    if prescale == 1:
        return np.ones(len(hashes), dtype=bool)
    if prescale == 0:
        return np.zeros(len(hashes), dtype=bool)
    limit = min(_MASK64, int(math.ldexp(1.0, 64) / prescale))
    return np.asarray(_splitmix64(hashes ^ _U64(seed_salt(seed_name))) < _U64(limit))
