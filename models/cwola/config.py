"""The CWoLa hunt's settings, apart from the hunt so that reading them imports no torch.

    >>> HuntConfig().features
    ('mj1', 'mj2', 'tau21_j1', 'tau21_j2')
    >>> HuntConfig(folds=2).check()
    Traceback (most recent call last):
    ...
    darktrigger.replay.errors.ConfigError: folds must be >= 3 (a test fold, a validation fold and training folds), got 2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from darktrigger.models.cwola.dijet_fit import SQRT_S_GEV
from darktrigger.replay.errors import ConfigError, DarkTriggerError

#: the analysis columns the hunt's classifier reads by default (jet masses, τ21)
DEFAULT_FEATURES = ("mj1", "mj2", "tau21_j1", "tau21_j2")
#: the efficiencies of the classifier cuts in each window
DEFAULT_EFFICIENCIES = (0.1, 0.01, 0.002)


class HuntError(DarkTriggerError, ValueError):
    """A hunt that cannot go on in some window; the message names the window."""


@dataclass
class HuntConfig:
    """Every setting of a hunt (the defaults are ``darktrigger cwola hunt``'s)."""

    mass_column: str = "mjj"
    features: Sequence[str] = DEFAULT_FEATURES
    #: "auto" or a list of (low, high) signal regions in GeV
    windows: str | Sequence[tuple[float, float]] = "auto"
    efficiencies: Sequence[float] = DEFAULT_EFFICIENCIES
    folds: int = 5
    inner_folds: int = 2
    keep: int | None = None           # inner models averaged per fold (None: all)
    resolution: float = 0.05          # relative m_jj resolution
    sr_bins: int = 6
    sideband_bins: int = 6
    step_bins: int = 3
    fit_range: tuple[float, float] | None = None  # GeV; None: from the spectrum
    min_sideband_events: int = 200
    sqrt_s: float = SQRT_S_GEV
    epochs: int = 30
    batch_size: int = 256
    patience: int = 5
    hidden: Sequence[int] = (32, 32)
    lr: float = 1e-3
    seed: int = 0
    threads: int = 1
    on_error: Literal["fail", "skip"] = "fail"
    #: pseudo-experiments for the global significance (0: the trials factor instead;
    #: see :mod:`darktrigger.models.cwola.global_significance`)
    null_toys: int = 500

    def check(self) -> None:
        """Raise :class:`ConfigError` for settings that cannot work."""
        if self.folds < 3:
            raise ConfigError(f"folds must be >= 3 (a test fold, a validation fold and training "
                              f"folds), got {self.folds}")
        if not 1 <= self.inner_folds <= self.folds - 1:
            raise ConfigError(f"inner_folds must be in 1..folds-1 = {self.folds - 1}, got {self.inner_folds}")
        if self.keep is not None and not 1 <= self.keep <= self.inner_folds:
            raise ConfigError(f"keep must be in 1..inner_folds = {self.inner_folds}, got {self.keep}")
        if not self.features:
            raise ConfigError("give at least one feature column")
        if self.mass_column in self.features:
            raise ConfigError(f"the mass column {self.mass_column!r} cannot also be a feature: the "
                              "classifier must not see m_jj")
        bad = [e for e in self.efficiencies if not 0 < e < 1]
        if bad or not self.efficiencies:
            raise ConfigError(f"efficiencies must be in (0, 1), got {list(self.efficiencies)}")
        if not 0 < self.resolution < 0.5:
            raise ConfigError(f"resolution is relative (e.g. 0.05), got {self.resolution}")
        if min(self.sr_bins, self.sideband_bins, self.step_bins) < 1:
            raise ConfigError("sr_bins, sideband_bins and step_bins must be >= 1")
        if self.null_toys < 0:
            raise ConfigError(f"null_toys must be >= 0 (0: the trials factor), got {self.null_toys}")
        if self.on_error not in ("fail", "skip"):
            raise ConfigError(f"on_error must be 'fail' or 'skip', got {self.on_error!r}")
        if self.fit_range is not None and not 0 < self.fit_range[0] < self.fit_range[1] < self.sqrt_s:
            raise ConfigError(f"fit_range must be 0 < low < high < √s, got {self.fit_range}")

    @property
    def bin_width(self) -> float:
        """Width of an m_jj bin in ln m_jj."""
        return self.resolution / 2.0

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["features"] = list(self.features)
        out["efficiencies"] = list(self.efficiencies)
        out["hidden"] = list(self.hidden)
        out["windows"] = self.windows if isinstance(self.windows, str) else [list(w) for w in self.windows]
        out["fit_range"] = None if self.fit_range is None else list(self.fit_range)
        return out
