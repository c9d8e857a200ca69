"""One Pythia 8 run and what the Pythia generators share: settings, seeds, the lepton filter.

:class:`PythiaRun` is one initialised ``pythia8mc.Pythia`` for one process (its settings in
:data:`PROCESS_SETTINGS`) that hands out events as visible final-state particles; both the
single-process generator (:mod:`darktrigger.replay.generators.pythia`) and the zero-bias
crossings (:mod:`darktrigger.replay.generators.pythia_zero_bias`) are built on it.

    >>> derived_seed(1, 2) == derived_seed(1, 2) != derived_seed(1, 3)
    True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from darktrigger.replay.detector import ParticleBatch
from darktrigger.replay.errors import ConfigError, GenerationError

log = logging.getLogger(__name__)

ECM_GEV = 13_600.0
MB_TO_PB = 1e9

COMMON_SETTINGS: tuple[str, ...] = (
    f"Beams:eCM = {ECM_GEV:.1f}",
    "Print:quiet = on",
    "Next:numberCount = 0",
    # K0S, Λ, ... (cτ > 10 mm) reach the detector undecayed, as in the experiments
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10",
)

PROCESS_SETTINGS: dict[str, tuple[str, ...]] = {
    "qcd": ("HardQCD:all = on", "PhaseSpace:pTHatMin = 30"),
    "wjets": ("WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"),
    "zjets": ("WeakSingleBoson:ffbar2gmZ = on", "PhaseSpace:mHatMin = 50",
              "23:onMode = off", "23:onIfAny = 11 13 15"),
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
    # gg → A needs A's gg channel in the decay table (for Γ(A → gg)), so the SM-like
    # channels are switched off rather than removed; the 4-lepton channel (meMode 100) gets
    # partial width 1.0 × the 10 MeV set here, the line stays narrow
    "ato4l": ("Higgs:useBSM = on", "HiggsBSM:gg2A3 = on", "36:m0 = 50", "36:mWidth = 0.01",
              "36:mMin = 45", "36:mMax = 55", "36:onMode = off",
              "36:addChannel = 1 1.0 100 11 -11 13 -13"),
    "lq_btau": ("LeptoQuark:gg2LQLQbar = on", "LeptoQuark:qqbar2LQLQbar = on", "42:m0 = 80",
                "42:mMin = 60", "42:mMax = 100", "42:0:products = 5 -15"),
    "h_tautau": ("HiggsSM:gg2H = on", "25:m0 = 60", "25:onMode = off", "25:onIfMatch = 15 -15"),
    "hpm_taunu": ("Higgs:useBSM = on", "HiggsBSM:ffbar2H+- = on", "37:m0 = 60", "37:mMin = 50",
                  "37:mMax = 70", "37:onMode = off", "37:onIfMatch = 15 16"),
    "qcd_dijet": ("HardQCD:all = on", "PhaseSpace:pTHatMin = 1000"),
    # the minimum-bias library of the zero-bias stream (not a process of its own: a crossing's
    # pile-up; replay/generators/pythia_zero_bias.py)
    "minbias": ("SoftQCD:inelastic = on",),
    # W' couplings as Pythia's default (SM-like); its quark/lepton channels are switched
    # off (not removed: production needs them) and W' → H0 H+ added with partial width
    # 1.0 × 16.7 GeV (about 12 % of the total). X = H0 and Y = H+ get democratic qq decays
    # with fixed widths (meMode 100), replacing the 2HDM ones (tt, WW, Wh dominate there)
    "wprime_xy": ("Higgs:useBSM = on", "NewGaugeBoson:ffbar2Wprime = on",
                  "34:m0 = 3500", "34:mMin = 3000", "34:mMax = 4000",
                  "34:onMode = off", "34:addChannel = 1 1.0 100 35 37",
                  "35:m0 = 500", "35:mWidth = 5", "35:mMin = 450", "35:mMax = 550",
                  "35:oneChannel = 1 0.2 100 1 -1", "35:addChannel = 1 0.2 100 2 -2",
                  "35:addChannel = 1 0.2 100 3 -3", "35:addChannel = 1 0.2 100 4 -4",
                  "35:addChannel = 1 0.2 100 5 -5",
                  "37:m0 = 100", "37:mWidth = 1", "37:mMin = 90", "37:mMax = 110",
                  "37:oneChannel = 1 0.5 100 2 -1", "37:addChannel = 1 0.5 100 4 -3"),
}


@dataclass(frozen=True)
class LeptonFilter:
    """Keep an event with ≥ ``min_leptons`` prompt e/μ of pT > ``pt_min`` GeV, |η| < ``eta_max``.

    If ``lead_pt_min`` > 0 the hardest of those must also have pT > ``lead_pt_min``. Applied
    to Pythia's parton-level event (module docs), i.e. before hadronisation and detector.

        >>> f = LeptonFilter(min_leptons=3, pt_min=6.0)
        >>> f.passes([20.0, 9.0, 7.0, 2.0], [0.1, -1.0, 2.0, 0.3])
        True
        >>> f.passes([20.0, 9.0, 7.0], [0.1, -1.0, 2.7])
        False
    """

    min_leptons: int = 3
    pt_min: float = 6.0
    eta_max: float = 2.5
    lead_pt_min: float = 0.0

    def __post_init__(self) -> None:
        if self.min_leptons < 1 or self.pt_min < 0 or self.eta_max <= 0 or self.lead_pt_min < 0:
            raise ConfigError(f"LeptonFilter needs min_leptons >= 1, pt_min >= 0, eta_max > 0 and "
                              f"lead_pt_min >= 0, got {self}")

    def passes(self, pts: Sequence[float], etas: Sequence[float]) -> bool:
        """Whether leptons with these pT (GeV) and η pass."""
        good = [pt for pt, eta in zip(pts, etas, strict=True) if pt > self.pt_min and abs(eta) < self.eta_max]
        return len(good) >= self.min_leptons and (self.lead_pt_min <= 0 or max(good) > self.lead_pt_min)

    @classmethod
    def coerce(cls, value: Any) -> LeptonFilter:
        """A LeptonFilter from itself or from a dict of its fields (ConfigError otherwise)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"min_leptons", "pt_min", "eta_max", "lead_pt_min"}
            if unknown:
                raise ConfigError(f"lepton_filter has no field(s) {', '.join(sorted(unknown))}; known: "
                                  "min_leptons, pt_min, eta_max, lead_pt_min")
            return cls(**value)
        raise ConfigError(f"lepton_filter must be a LeptonFilter, a dict of its fields, None or False; "
                          f"got {value!r}")


#: the generator-level filters applied unless the ``lepton_filter`` option says otherwise
DEFAULT_LEPTON_FILTERS: dict[str, LeptonFilter] = {
    "ato4l": LeptonFilter(min_leptons=3, pt_min=6.0, eta_max=2.5),
}


def _filter_hook(pythia8mc: Any, lepton_filter: LeptonFilter) -> Any:
    """A ``UserHooks`` that vetoes parton-level events failing ``lepton_filter`` (and counts)."""

    class _LeptonFilterHook(pythia8mc.UserHooks):
        def __init__(self) -> None:
            pythia8mc.UserHooks.__init__(self)
            self.tried = 0
            self.passed = 0

        def canVetoPartonLevel(self) -> bool:  # noqa: N802 - Pythia's name
            return True

        def doVetoPartonLevel(self, event: Any) -> bool:  # noqa: N802 - Pythia's name
            pts: list[float] = []
            etas: list[float] = []
            for i in range(event.size()):
                prt = event[i]
                if prt.idAbs() in (11, 13) and prt.isFinal():
                    pts.append(prt.pT())
                    etas.append(prt.eta())
            self.tried += 1
            ok = lepton_filter.passes(pts, etas)
            self.passed += ok
            return not ok

    return _LeptonFilterHook()


_PYTHIA_SEED_MAX = 900_000_000  # Pythia's Random:seed range; 0 would mean "from the clock"
_ROLE_MAIN, _ROLE_SIGMA, _ROLE_DETECTOR, _ROLE_MIX = 1, 2, 3, 4


def derived_seed(seed: int, *key: int, modulus: int = _PYTHIA_SEED_MAX - 1) -> int:
    """A seed in [1, modulus] that depends on ``seed`` and ``key`` (numpy SeedSequence)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *key]).generate_state(2, np.uint64)
    return int(state[0] % np.uint64(modulus)) + 1


class PythiaRun:
    """One initialised Pythia instance for one process; ``next_particles(k)`` gives k events.

        >>> run = PythiaRun("ttbar", seed=5)
        >>> run.next_particles(10).n_events
        10
    """

    def __init__(self, process: str, seed: int, *, extra: Sequence[str] = (),
                 process_level_only: bool = False, max_failures: int = 1000,
                 lepton_filter: LeptonFilter | None = None) -> None:
        try:
            import pythia8mc
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ConfigError(
                "the 'pythia' generator needs the pythia8mc package (pip install pythia8mc==8.317.2)"
            ) from err
        if process not in PROCESS_SETTINGS:
            raise ConfigError(f"Pythia has no settings for process {process!r}; "
                              f"known: {', '.join(PROCESS_SETTINGS)}")
        self.process = process
        self.max_failures = max_failures
        self.failures = 0
        self.pythia = pythia8mc.Pythia("", False)
        lines = [*COMMON_SETTINGS, *PROCESS_SETTINGS[process], *extra,
                 "Random:setSeed = on", f"Random:seed = {int(seed)}"]
        if process_level_only:
            lines += ["PartonLevel:all = off", "HadronLevel:all = off"]
        for line in lines:
            if not self.pythia.readString(line):
                raise ConfigError(
                    f"Pythia (process {process!r}) rejected the setting {line!r}: unknown key or "
                    "bad value; see the settings in pythia8mc's xmldoc (share/Pythia8/xmldoc)"
                )
        self.lepton_filter = None if process_level_only else lepton_filter
        self._hook = None
        if self.lepton_filter is not None:  # kept referenced: Pythia holds it during the run
            self._hook = _filter_hook(pythia8mc, self.lepton_filter)
            self.pythia.setUserHooksPtr(self._hook)
        if not self.pythia.init():
            raise ConfigError(f"Pythia (process {process!r}) failed to initialise with settings {lines}")
        self._visible: dict[int, bool] = {}
        self._buffer: list[ParticleBatch] = []

    @property
    def filter_counts(self) -> tuple[int, int]:
        """(events tried, events that passed) by the lepton filter so far; (0, 0) without one."""
        return (self._hook.tried, self._hook.passed) if self._hook is not None else (0, 0)

    def prefetch(self, n: int, chunk: int) -> float:
        """Generate ``n`` events ahead (kept for ``next_particles``); the filter efficiency then."""
        for k in range(0, n, chunk):
            self._buffer.append(self._generate(min(chunk, n - k)))
        tried, passed = self.filter_counts
        return passed / tried if tried else 1.0

    def sigma_pb(self) -> float:
        """Pythia's estimate of the cross section of the events so far, in pb."""
        return float(self.pythia.infoPython().sigmaGen()) * MB_TO_PB

    def run_process_level(self, n: int) -> None:
        """Generate ``n`` events (for the σ estimate), counting failures."""
        done = 0
        while done < n:
            if self.pythia.next():
                done += 1
            else:
                self._failed()

    def _failed(self) -> None:
        self.failures += 1
        if self.failures > self.max_failures:
            raise GenerationError(
                f"Pythia (process {self.process!r}): {self.failures} failed events, more than "
                f"max_failures={self.max_failures}; check the settings"
            )

    def next_particles(self, k: int) -> ParticleBatch:
        """``k`` events' visible final-state particles (failed events retried).

        Events generated ahead by :meth:`prefetch` come first, in their order.
        """
        parts: list[ParticleBatch] = []
        got = 0
        while got < k and self._buffer:
            head = self._buffer[0]
            take = min(k - got, head.n_events)
            if take == head.n_events:
                parts.append(self._buffer.pop(0))
            else:
                parts.append(head.take(np.arange(take)))
                self._buffer[0] = head.take(np.arange(take, head.n_events))
            got += take
        if got < k:
            parts.append(self._generate(k - got))
        return parts[0] if len(parts) == 1 else ParticleBatch.concat(parts)

    def _generate(self, k: int) -> ParticleBatch:
        """``k`` new events from Pythia (failed events retried and counted)."""
        return self.next_with_scale(k)[0]

    def next_with_scale(self, k: int) -> tuple[ParticleBatch, np.ndarray]:
        """``k`` new events (not the prefetched ones) and their hard scale p̂T in GeV, ``[k]``.

        For soft-QCD events p̂T is that of the hardest multiparton interaction.
        """
        import awkward as ak

        parts: list[ParticleBatch] = []
        scales: list[np.ndarray] = []
        got = 0
        while got < k:
            events = self.pythia.nextBatch(k - got, "none")
            bad = ak.to_numpy(ak.is_none(events, axis=0))
            if bad.any():
                for _ in range(int(bad.sum())):
                    self._failed()
                events = events[~bad]
            if len(events) == 0:
                continue
            parts.append(self._extract(events))
            scales.append(np.sqrt(np.maximum(ak.to_numpy(events.info.pT2Hat).astype(np.float64), 0.0)))
            got += len(events)
        batch = parts[0] if len(parts) == 1 else ParticleBatch.concat(parts)
        return batch, np.concatenate(scales)

    def _extract(self, events: Any) -> ParticleBatch:
        import awkward as ak

        prt = events.prt
        final = prt.status > 0
        pid = ak.to_numpy(ak.flatten(prt.id[final])).astype(np.int32)
        visible = self._visible_mask(pid)
        counts = ak.to_numpy(ak.num(prt.id[final]))
        ev = np.repeat(np.arange(len(counts)), counts)
        p = prt.p[final]
        cols = {k: ak.to_numpy(ak.flatten(p[k])).astype(np.float64)[visible] for k in ("px", "py", "pz", "e")}
        return ParticleBatch.from_arrays(**cols, pid=pid[visible],
                                         counts=np.bincount(ev[visible], minlength=len(counts)))

    def _visible_mask(self, pid: np.ndarray) -> np.ndarray:
        """Pythia's own isVisible (neutrinos, neutralinos, ... are not), cached per id."""
        ids = np.unique(pid)
        for i in ids:
            if int(i) not in self._visible:
                self._visible[int(i)] = bool(self.pythia.particleData.isVisible(int(i)))
        invisible = [i for i in ids if not self._visible[int(i)]]
        return ~np.isin(pid, invisible) if invisible else np.ones(len(pid), dtype=bool)
