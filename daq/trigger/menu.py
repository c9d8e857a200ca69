"""The trigger menu: seeds from YAML, per-event decisions as bit masks, and rate counting.

A menu is a list of seeds (:mod:`darktrigger.daq.trigger.seeds`), each with a prescale, the models its
anomaly seeds read, the crossing rate and an accept budget:

.. code-block:: yaml

    colliding_bunches: 2544         # crossing rate = n × 11.2455 kHz (default 2544: 28.61 MHz)
    # bx_rate_mhz: 28.61            # or the crossing rate itself, in MHz (not both)
    budget_khz: 110                 # total accept budget (optional)
    models:
      vae: {path: models/vae, variant: mu2, backend: onnxruntime}   # path relative to this file
    seeds:
      - {name: SingleMu22, type: single_mu, pt_min: 22}
      - {name: HT360, type: ht, ht_min: 360, prescale: 2}
      - {name: AXO_Nominal, type: anomaly, model: vae, rate_khz: 5}   # or threshold: 12.3

Bit ``i`` of a decision is seed ``i`` in menu order (at most 64 seeds). Scores arrive
as float32 columns ``score/<model name>``. Prescales are decided per event by a hash
of (run, lumi, event) and the seed name (:func:`darktrigger.daq.trigger.seeds.prescale_pass`), so batches
may arrive in any order and split in any way: the same event always gets the same bits.

    >>> import numpy as np
    >>> from darktrigger.replay.events import EventBatch
    >>> menu = Menu.from_dict({"seeds": [{"name": "MET90", "type": "met", "met_min": 90}]})
    >>> objects = np.zeros((4, 19, 3), np.float32); objects[:2, 0, 0] = (100, 50)
    >>> decision = menu.decide(EventBatch.from_objects(objects))
    >>> decision.bits, decision.accepted
    (array([1, 0, 0, 0], dtype=uint64), array([ True, False, False, False]))
    >>> from darktrigger.daq.trigger.rates import MenuCounts
    >>> counts = MenuCounts.for_menu(menu).add(decision)
    >>> counts.counts.tolist(), f"{counts.rates_hz[0]:.0f} Hz"   # 1 of 4 crossings at 28.61 MHz
    ([1], '7152138 Hz')
    >>> print(Menu.from_dict({"colliding_bunches": 1200, "seeds": [
    ...     {"name": "MET90", "type": "met", "met_min": 90}]}).describe())
    menu: 1 seeds at the crossing rate 13.49 MHz (1200 colliding bunches)
      bit  0  MET90  met         prescale 1     met_min=90
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from darktrigger.daq.trigger.decision import DEFAULT_BX_RATE_MHZ, Decision, bunches_to_mhz
from darktrigger.daq.trigger.rates import MenuCounts
from darktrigger.daq.trigger.seeds import (
    COMMON_KEYS,
    AnomalySeed,
    Columns,
    Seed,
    event_hash,
    make_seed,
    prescale_pass,
    score_column,
)
from darktrigger.replay.errors import ConfigError, SchemaError
from darktrigger.replay.events import EventBatch
from darktrigger.replay.lhc import BUNCH_SLOTS, F_REV_HZ
from darktrigger.replay.registry import unknown_name

if TYPE_CHECKING:  # models pulls in torch: only calibration and offline rates need it
    from darktrigger.models.base import Scorer

log = logging.getLogger(__name__)

MAX_SEEDS = 64
TOP_KEYS = ("name", "description", "bx_rate_mhz", "colliding_bunches", "budget_khz", "models", "seeds")
MODEL_KEYS = ("path", "variant", "backend")
IDENTITY = ("run", "lumi", "event")


@dataclass(frozen=True)
class ModelSpec:
    """A model the menu's anomaly seeds read: its directory, variant and backend."""

    name: str
    path: Path
    variant: str | None = None
    backend: str = "onnxruntime"

    @property
    def column(self) -> str:
        """``score/<name>``: the column its scores travel in."""
        return score_column(self.name)

    def load(self, threads: int = 1) -> Scorer:
        """The scorer, via :func:`darktrigger.models.load_model`."""
        from darktrigger.models import load_model

        return load_model(self.path, self.backend, variant=self.variant, threads=threads)


def _check_name(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _unknown(where: str, keys: Sequence[str], known: Sequence[str]) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ConfigError(f"{where}: unknown key {key!r}{hint} Known keys: {', '.join(known)}")


def _prescale(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not (value == 0 or value >= 1):
        raise ConfigError(f"{where}: prescale must be 0 (off) or a number >= 1, got {value!r}")
    return int(value) if float(value).is_integer() else float(value)


class Menu:
    """An ordered list of seeds with prescales; see the module docs for the YAML.

    Build one with :meth:`from_yaml` or :meth:`from_dict`, which validate everything up
    front and raise :class:`~darktrigger.replay.errors.ConfigError` naming the file, seed and key.
    """

    def __init__(self, seeds: Sequence[Seed], prescales: Sequence[float],
                 models: Mapping[str, ModelSpec], *, bx_rate_mhz: float = DEFAULT_BX_RATE_MHZ,
                 budget_khz: float | None = None, name: str | None = None,
                 description: str | None = None, where: str = "menu",
                 colliding_bunches: int | None = None) -> None:
        self.seeds = list(seeds)
        self.prescales = list(prescales)
        self.models = dict(models)
        #: the colliding bunch pairs the crossing rate was given as (None: given in MHz)
        self.colliding_bunches = colliding_bunches
        self.bx_rate_mhz = float(bx_rate_mhz if colliding_bunches is None else bunches_to_mhz(colliding_bunches))
        self.budget_khz = None if budget_khz is None else float(budget_khz)
        self.name = name
        self.description = description
        self.where = where

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> Menu:
        """Read and validate a menu file; model paths are relative to its folder."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the menu: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, where=str(path), base_dir=path.parent)

    @classmethod
    def from_dict(cls, data: Any, where: str = "menu", base_dir: str | Path | None = None) -> Menu:
        """Validate a menu mapping (as YAML gives it); ``where`` names it in errors."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping with keys {', '.join(TOP_KEYS)}, "
                              f"got {type(data).__name__}")
        _unknown(where, list(data), TOP_KEYS)
        bx = data.get("bx_rate_mhz", DEFAULT_BX_RATE_MHZ)
        if isinstance(bx, bool) or not isinstance(bx, int | float) or not math.isfinite(bx) or bx <= 0:
            raise ConfigError(f"{where}: bx_rate_mhz must be a positive rate in MHz, got {bx!r}")
        bunches = data.get("colliding_bunches")
        if bunches is not None:
            if "bx_rate_mhz" in data:
                raise ConfigError(f"{where}: give the crossing rate once: bx_rate_mhz ({data['bx_rate_mhz']!r}) "
                                  f"or colliding_bunches ({bunches!r}, × 11.2455 kHz), not both")
            if isinstance(bunches, bool) or not isinstance(bunches, int) or not 0 < bunches <= BUNCH_SLOTS:
                raise ConfigError(f"{where}: colliding_bunches must be a whole number of bunch pairs "
                                  f"from 1 to {BUNCH_SLOTS}, got {bunches!r}")
        budget = data.get("budget_khz")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)
                                   or not math.isfinite(budget) or budget <= 0):
            raise ConfigError(f"{where}: budget_khz must be a positive rate in kHz, got {budget!r}")
        models = cls._models(data.get("models") or {}, where, base_dir)
        raw_seeds = data.get("seeds")
        if not isinstance(raw_seeds, list) or not raw_seeds:
            raise ConfigError(f"{where}: seeds must be a non-empty list of seeds "
                              f"({{name: ..., type: ..., ...}}), got {raw_seeds!r}")
        if len(raw_seeds) > MAX_SEEDS:
            raise ConfigError(f"{where}: {len(raw_seeds)} seeds, but a decision has {MAX_SEEDS} "
                              f"bits: at most {MAX_SEEDS} seeds")
        seeds: list[Seed] = []
        prescales: list[float] = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(raw_seeds):
            here = f"{where}, seed #{i + 1}"
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{here}: expected a mapping {{name: ..., type: ..., ...}}, got {entry!r}")
            if "name" not in entry:
                raise ConfigError(f"{here}: missing key 'name'")
            name = _check_name(here, "name", entry["name"])
            here = f"{where}, seed {name!r}"
            if name in seen:
                raise ConfigError(f"{here}: duplicate name (seed #{seen[name] + 1} and #{i + 1}); "
                                  f"seed names must be unique")
            seen[name] = i
            if "type" not in entry:
                raise ConfigError(f"{here}: missing key 'type' (one of {', '.join(_seed_types())})")
            seed_type = _check_name(here, "type", entry["type"])
            params = {k: v for k, v in entry.items() if k not in COMMON_KEYS}
            seed = make_seed(name, seed_type, params, where)
            if isinstance(seed, AnomalySeed) and seed.model not in models:
                declared = ", ".join(models) or "none"
                close = difflib.get_close_matches(seed.model, list(models), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{here}: key 'model': {seed.model!r} is not declared under "
                                  f"models:{hint}; declared: {declared}")
            seeds.append(seed)
            prescales.append(_prescale(f"{here}, key 'prescale'", entry.get("prescale", 1)))
        for key in ("name", "description"):
            if data.get(key) is not None:
                _check_name(where, key, data[key])
        return cls(seeds, prescales, models, bx_rate_mhz=float(bx), budget_khz=budget,
                   name=data.get("name"), description=data.get("description"), where=where,
                   colliding_bunches=bunches)

    @staticmethod
    def _models(data: Any, where: str, base_dir: str | Path | None) -> dict[str, ModelSpec]:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: models must map names to {{path: ..., variant: ..., "
                              f"backend: ...}}, got {data!r}")
        out = {}
        for name, spec in data.items():
            here = f"{where}, model {name!r}"
            _check_name(here, "name", name)
            if "/" in name:
                raise ConfigError(f"{here}: a model name cannot contain '/' (it names the column "
                                  f"score/<name>)")
            if isinstance(spec, str):
                spec = {"path": spec}
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{here}: expected {{path: ..., variant: ..., backend: ...}}, got {spec!r}")
            _unknown(here, list(spec), MODEL_KEYS)
            if "path" not in spec:
                raise ConfigError(f"{here}: missing key 'path' (the model directory, relative to the menu)")
            path = Path(_check_name(here, "path", spec["path"]))
            if base_dir is not None and not path.is_absolute():
                path = Path(os.path.normpath(Path(base_dir) / path))
            variant = spec.get("variant")
            if variant is not None:
                _check_name(here, "variant", variant)
            backend = spec.get("backend", "onnxruntime")
            from darktrigger.models.backends import (
                BACKENDS,  # torch: only menus with models need it
            )

            if backend not in BACKENDS:
                raise ConfigError(f"{here}, key 'backend': {unknown_name('scoring backend', backend, BACKENDS.names())}")
            out[name] = ModelSpec(name, path, variant, backend)
        return out

    def to_dict(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """The menu as YAML holds it; model paths relative to ``relative_to`` when given."""
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        if self.colliding_bunches is not None:
            out["colliding_bunches"] = self.colliding_bunches
        else:
            out["bx_rate_mhz"] = self.bx_rate_mhz
        if self.budget_khz is not None:
            out["budget_khz"] = self.budget_khz
        if self.models:
            out["models"] = {}
            for m in self.models.values():
                path = str(m.path) if relative_to is None else os.path.relpath(m.path, relative_to)
                out["models"][m.name] = {"path": Path(path).as_posix(), "variant": m.variant,
                                         "backend": m.backend}
        out["seeds"] = []
        for seed, prescale in zip(self.seeds, self.prescales, strict=True):
            entry = {"name": seed.name, "type": seed.seed_type, **seed.config()}
            if prescale != 1:
                entry["prescale"] = prescale
            out["seeds"].append(entry)
        return out

    def to_yaml(self, path: str | Path, header: str | None = None) -> Path:
        """Write the menu (model paths made relative to the new file's folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = yaml.dump(_flow_style(self.to_dict(relative_to=path.parent)), Dumper=_MenuDumper,
                         sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
        lines = [f"# {line}".rstrip() for line in (header or "").splitlines()]
        path.write_text("\n".join([*lines, body]) if lines else body)
        return path

    # -- inspection -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.seeds)

    def __repr__(self) -> str:
        return f"Menu({self.where!r}, seeds={self.names})"

    @property
    def crossing_rate(self) -> str:
        """The crossing rate for a listing: '28.61 MHz (2544 colliding bunches)'."""
        bunches = self.bx_rate_mhz * 1e6 / F_REV_HZ
        if self.colliding_bunches is None and abs(bunches - round(bunches)) > 1e-3:
            return f"{self.bx_rate_mhz:.4g} MHz"
        return f"{self.bx_rate_mhz:.4g} MHz ({round(bunches)} colliding bunches)"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.seeds)

    def seed(self, name: str) -> Seed:
        """The seed called ``name`` (ConfigError with the nearest name if none)."""
        for s in self.seeds:
            if s.name == name:
                return s
        close = difflib.get_close_matches(name, list(self.names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{self.where}: no seed {name!r}{hint}")

    @property
    def anomaly_seeds(self) -> list[AnomalySeed]:
        return [s for s in self.seeds if isinstance(s, AnomalySeed)]

    @property
    def uncalibrated(self) -> list[str]:
        """Names of anomaly seeds with a target rate but no threshold yet."""
        return [s.name for s in self.anomaly_seeds if not s.calibrated]

    @property
    def used_models(self) -> dict[str, ModelSpec]:
        """The declared models some anomaly seed reads (those the scorer workers must run)."""
        used = {s.model for s in self.anomaly_seeds}
        return {name: m for name, m in self.models.items() if name in used}

    @property
    def required_columns(self) -> list[str]:
        """Every column :meth:`decide` reads: objects, score/<model>, and the identity
        columns (run, lumi, event) when a seed has a prescale other than 0 or 1."""
        cols: list[str] = []
        for seed in self.seeds:
            cols += [c for c in seed.columns if c not in cols]
        if any(p not in (0, 1) for p in self.prescales):
            cols += list(IDENTITY)
        return cols

    def describe(self) -> str:
        """A short listing of a menu: seeds, types, keys and prescales."""
        width = max(len(n) for n in self.names) + 2
        lines = [f"{self.name or self.where}: {len(self)} seeds at the crossing rate {self.crossing_rate}"
                 + (f", budget {self.budget_khz:g} kHz" if self.budget_khz is not None else "")]
        for i, (seed, ps) in enumerate(zip(self.seeds, self.prescales, strict=True)):
            cfg = {k: v for k, v in seed.config().items() if k != "calibration"}
            lines.append(f"  bit {i:>2}  {seed.name:<{width}}{seed.seed_type:<12}prescale {ps:<6g}"
                         + ", ".join(f"{k}={v}" for k, v in cfg.items()))
        for m in self.models.values():
            lines.append(f"  model {m.name}: {m.path} (variant {m.variant}, {m.backend})")
        if self.uncalibrated:
            lines.append(f"  uncalibrated (run `darktrigger menu calibrate`): {', '.join(self.uncalibrated)}")
        return "\n".join(lines)

    # -- deciding -------------------------------------------------------------------
    def decide(self, columns: Columns) -> Decision:
        """Bits per event for a batch (EventBatch or mapping of columns).

        A missing column is a :class:`SchemaError` naming the seed and the column; an
        uncalibrated anomaly seed a :class:`ConfigError`.
        """
        n = len(columns) if isinstance(columns, EventBatch) else _length(columns, self.where)
        raw = np.zeros(n, np.uint64)
        bits = np.zeros(n, np.uint64)
        hashes: np.ndarray | None = None
        for i, (seed, prescale) in enumerate(zip(self.seeds, self.prescales, strict=True)):
            fired = np.asarray(seed.fires(columns), dtype=bool)
            if fired.shape != (n,):
                raise SchemaError(f"{self.where}, seed {seed.name!r}: fires() gave shape "
                                  f"{fired.shape} for {n} events")
            bit = np.uint64(1) << np.uint64(i)
            raw |= fired.astype(np.uint64) * bit
            if prescale not in (0, 1) and fired.any():
                if hashes is None:
                    hashes = event_hash(*(_column(columns, c, self.where, seed.name) for c in IDENTITY))
                fired = fired & prescale_pass(hashes, seed.name, prescale)
            elif prescale == 0:
                fired = np.zeros(n, dtype=bool)
            bits |= fired.astype(np.uint64) * bit
        return Decision(raw, bits, self.names)


class _Flow(dict):
    """A mapping written on one line, as the example menus write seeds."""


class _FlowList(list):
    """A list written on one line (``pt_min: [15, 7]``)."""


class _MenuDumper(yaml.SafeDumper):
    pass


_MenuDumper.add_representer(_Flow, lambda d, v: d.represent_mapping(
    "tag:yaml.org,2002:map", v.items(), flow_style=True))
_MenuDumper.add_representer(_FlowList, lambda d, v: d.represent_sequence(
    "tag:yaml.org,2002:seq", v, flow_style=True))


def _flow_style(data: dict[str, Any]) -> dict[str, Any]:
    """Seeds and models one a line, as the example menus have them; calibrated seeds in blocks."""
    out = dict(data)
    if "models" in data:
        out["models"] = {k: _Flow(v) for k, v in data["models"].items()}
    seeds = []
    for entry in data["seeds"]:
        entry = {k: _FlowList(v) if isinstance(v, list) else v for k, v in entry.items()}
        if "calibration" in entry:
            seeds.append(entry)
        else:
            seeds.append(_Flow(entry))
    out["seeds"] = seeds
    return out


def _length(columns: Mapping[str, np.ndarray], where: str) -> int:
    if not columns:
        raise SchemaError(f"{where}: a batch with no columns")
    lengths = {name: len(arr) for name, arr in columns.items()}
    if len(set(lengths.values())) > 1:
        raise SchemaError(f"{where}: columns of different lengths: {lengths}")
    return next(iter(lengths.values()))


def _column(columns: Columns, name: str, where: str, seed: str) -> np.ndarray:
    if name not in columns:
        raise SchemaError(f"{where}, seed {seed!r}: its prescale needs column {name!r} (the event "
                          f"identity run, lumi, event decides which events a prescale keeps)")
    return np.asarray(columns[name])


def _seed_types() -> list[str]:
    from darktrigger.daq.trigger.seeds import SEEDS

    return SEEDS.names()


# -- scoring and calibration ----------------------------------------------------------
def add_scores(batch: EventBatch, scorers: Mapping[str, Scorer]) -> EventBatch:
    """The batch with a ``score/<name>`` column from each scorer."""
    return batch.with_columns(**{score_column(name): s.score(batch) for name, s in scorers.items()})


def load_scorers(menu: Menu, threads: int = 1, models: Sequence[str] | None = None) -> dict[str, Scorer]:
    """Load the models the menu's anomaly seeds read (or those named), by their backends."""
    names = list(menu.used_models) if models is None else list(models)
    return {name: menu.models[name].load(threads=threads) for name in names}


def calibrate_menu(menu: Menu, zero_bias: Columns, *, scorers: Mapping[str, Scorer] | None = None,
                   threads: int = 1, source: str | None = None) -> Menu:
    """A new menu whose anomaly seeds with ``rate_khz`` have thresholds for those rates.

    Each threshold is the zero-bias score quantile at FPR = rate / crossing rate
    (:func:`darktrigger.models.thresholds.thresholds_for_rates`, as ``darktrigger calibrate`` uses), for
    the seed's rate before prescale, weighted by the batch's ``weight`` column (a weighted
    quantile; checked: a NaN, negative or zero-sum weight is an error naming ``source`` and
    the row). Scores come from the batch's ``score/<model>`` column when it has one, else
    from ``scorers`` or the menu's models, loaded here. The seed keeps ``rate_khz`` and gains
    a ``calibration`` record: the sample (``source``), its size and effective size, the
    threshold's uncertainty (from the sample), the effective events above it and whether it
    is resolved (>= 10 of them).

        >>> menu = Menu.from_dict({"models": {"m": {"path": "m"}}, "seeds": [
        ...     {"name": "AD", "type": "anomaly", "model": "m", "rate_khz": 400}]})
        >>> zb = {"score/m": np.arange(1000, dtype=np.float32)}
        >>> calibrate_menu(menu, zb).seed("AD").threshold   # 400 kHz / 28.61 MHz: 13 of 1000 above
        986.0
    """
    from darktrigger.models.thresholds import checked_weights, thresholds_for_rates

    todo = [s for s in menu.anomaly_seeds if s.params["rate_khz"] is not None]
    if not todo:
        log.warning("%s: no anomaly seed has rate_khz; nothing to calibrate", menu.where)
    data = menu.to_dict()
    by_name = {entry["name"]: entry for entry in data["seeds"]}
    scorers = dict(scorers or {})
    n = len(zero_bias) if isinstance(zero_bias, EventBatch) else _length(zero_bias, menu.where)
    weights: np.ndarray | None = None
    if "weight" in zero_bias:
        weights = checked_weights(zero_bias["weight"], source or menu.where, whole_file=True)
        if (weights == 1).all():  # unit weights: the unweighted quantile (the same, and faster)
            weights = None
    for model in dict.fromkeys(s.model for s in todo):
        column = score_column(model)
        if column in zero_bias:
            scores = np.asarray(zero_bias[column])
        else:
            scorer = scorers.get(model) or menu.models[model].load(threads=threads)
            batch = zero_bias if isinstance(zero_bias, EventBatch) else dict(zero_bias)
            scores = scorer.score(batch)
        seeds = [s for s in todo if s.model == model]
        found = thresholds_for_rates(scores, [s.params["rate_khz"] for s in seeds],
                                     input_rate_mhz=menu.bx_rate_mhz, weights=weights)
        for seed, t in zip(seeds, found, strict=True):
            entry = by_name[seed.name]
            entry["threshold"] = t.threshold
            entry["calibration"] = {
                "zero_bias": source, "events": n, "weighted": weights is not None, "n_eff": t.n_eff,
                "fpr": t.fpr, "uncertainty": t.uncertainty,
                "threshold_low": t.threshold_low, "threshold_high": t.threshold_high,
                "n_above": t.n_above, "n_eff_above": t.n_eff_above,
                "achieved_rate_khz": t.achieved_fpr * menu.bx_rate_mhz * 1e3,
                "resolved": t.resolved, **({"note": t.message} if t.message else {}),
            }
    return Menu.from_dict(data, where=menu.where)  # paths in data are already resolved


# -- counting over files ---------------------------------------------------------------
def offline_counts(menu: Menu, paths: list[Path], *, max_events: int | None = None,
                   chunk_size: int = 65536, threads: int = 1, on_error: str = "fail") -> MenuCounts:
    """Per-seed counts of a menu over files: each needed model scores each chunk, then
    :meth:`Menu.decide`, each event counted with its ``weight`` (checked: a NaN, negative or
    zero-sum weight is an :class:`~darktrigger.replay.errors.InputFormatError` naming the file
    and row). What ``darktrigger menu rates`` prints."""
    from darktrigger.models.thresholds import check_weight_sum, checked_weights
    from darktrigger.replay.readers import open_events

    if menu.uncalibrated:
        raise ConfigError(f"{menu.where}: seed(s) {', '.join(menu.uncalibrated)} have rate_khz but "
                          f"no threshold; run `darktrigger menu calibrate` first")
    scorers = load_scorers(menu, threads=threads)
    counts = MenuCounts.for_menu(menu)
    for path in paths:
        row, total, events = 0, 0.0, 0
        for batch in open_events(path, chunk_size=chunk_size, on_error=on_error):
            if max_events is not None and counts.events + len(batch) > max_events:
                batch = batch[: max_events - counts.events]
            weights = checked_weights(batch, path, first_row=row)
            row += len(batch)
            total += float(weights.sum())
            events += len(batch)
            counts.add(menu.decide(add_scores(batch, scorers)), weights=weights)
            if max_events is not None and counts.events >= max_events:
                break
        check_weight_sum(total, events, path)
        if max_events is not None and counts.events >= max_events:
            break
    return counts


__all__ = ["Menu", "ModelSpec", "add_scores", "calibrate_menu", "offline_counts",
           "load_scorers"]
