"""The quantised networks as exact fixed-point arithmetic: formats, layers, reference, ranges.

A quantised scorer (:mod:`darktrigger.models.quantised.scorers`) is a short list of layers on fixed-point
numbers. This module is the one description of that arithmetic that every
implementation follows: the QKeras model trains it, the torch module here computes
it exactly (scoring and ONNX), hls4ml's precisions are derived from it
(:mod:`darktrigger.firmware.hls`), and da4ml traces it into Verilog (:mod:`darktrigger.firmware.rtl`).

=================  =============================================================
layer              arithmetic
=================  =============================================================
``Dense``          ``x @ W + b``, exact (no rounding): the result has
                   ``frac(x) + frac(W)`` fractional bits
``ReLU(fmt)``      ``min(round(max(x, 0)), max(fmt))``: QKeras ``quantized_relu``,
                   hls4ml ``ap_ufixed<W, I, AP_RND_CONV, AP_SAT>``
``Quant(fmt)``     ``clip(round(x), min, max)``: QKeras ``quantized_bits``,
                   hls4ml ``ap_fixed<W, I, AP_RND_CONV, AP_SAT>``
``SubInput``       ``x − input`` (the autoencoder's reconstruction difference)
``SumSquares``     ``Σ x²`` over the features, exact: the score
=================  =============================================================

``round`` is round-half-to-even everywhere (TensorFlow's ``tf.round``, ``AP_RND_CONV``,
torch and ONNX ``Round``). A value is exact in float32 when it needs at most 24
significant bits; :func:`analyse` bounds every intermediate of a trained network (from
its weights and the input range) and :func:`check_float32_exact` refuses a network whose
accumulators could need more — QKeras computes in float32, so it would round there.

    >>> fmt = Fmt(8, 3, signed=False)                  # ap_ufixed<8,3>
    >>> fmt.ap, fmt.frac, fmt.high
    ('ap_ufixed<8,3>', 5, 7.96875)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from darktrigger.replay.errors import ConfigError

FLOAT32_BITS = 24  #: significant bits of a float32


@dataclass(frozen=True)
class Fmt:
    """A fixed-point type in ap_fixed terms: ``width`` bits, ``integer`` of them above the
    binary point (the sign bit included when ``signed``)."""

    width: int
    integer: int
    signed: bool = True

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0**-self.frac

    @property
    def low(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def high(self) -> float:
        return 2.0 ** (self.integer - (1 if self.signed else 0)) - self.lsb

    @property
    def ap(self) -> str:
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}>"

    def hls(self, rounding: str = "AP_RND_CONV", saturation: str = "AP_SAT") -> str:
        return f"{self.ap[:-1]},{rounding},{saturation}>"

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Round half to even onto the grid and saturate (numpy reference, float64)."""
        scaled = np.round(np.asarray(x, np.float64) * 2.0**self.frac)
        return np.clip(scaled, self.low * 2.0**self.frac, self.high * 2.0**self.frac) * self.lsb

    @classmethod
    def qkeras_bits(cls, bits: int, integer: int) -> Fmt:
        """The type of QKeras ``quantized_bits(bits, integer, alpha=1)`` (a sign bit more)."""
        return cls(bits, integer + 1, True)

    @classmethod
    def qkeras_relu(cls, bits: int, integer: int) -> Fmt:
        """The type of QKeras ``quantized_relu(bits, integer)``."""
        return cls(bits, integer, False)

    @classmethod
    def covering(cls, low: float, high: float, frac: int) -> Fmt:
        """The narrowest type with ``frac`` fractional bits holding [low, high]."""
        signed = low < 0
        mag = max(abs(low), abs(high) + 2.0**-frac, 2.0**-frac)
        integer = max(math.ceil(math.log2(mag)), 1 - frac) + (1 if signed else 0)
        return cls(integer + frac, integer, signed)


# -- layers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dense:
    name: str
    n_in: int
    n_out: int
    weight: Fmt
    bias: Fmt


@dataclass(frozen=True)
class ReLU:
    name: str
    fmt: Fmt


@dataclass(frozen=True)
class Quant:
    name: str
    fmt: Fmt


@dataclass(frozen=True)
class SubInput:
    name: str


@dataclass(frozen=True)
class SumSquares:
    name: str


Layer = Dense | ReLU | Quant | SubInput | SumSquares


def reference(layers: list[Layer], params: dict[str, tuple[np.ndarray, np.ndarray]],
              x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output for inputs ``x`` ``[N, n_in]`` (on the input grid), float64.

    ``params`` maps a Dense layer's name to (W ``[n_in, n_out]``, b ``[n_out]``) on their
    grids. float64 holds every value exactly (they need far fewer than 53 bits).
    """
    inp = np.asarray(x, np.float64)
    h = inp
    out: dict[str, np.ndarray] = {}
    for layer in layers:
        if isinstance(layer, Dense):
            w, b = params[layer.name]
            h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        elif isinstance(layer, ReLU | Quant):
            h = layer.fmt.quantize(h)
        elif isinstance(layer, SubInput):
            h = h - inp
        elif isinstance(layer, SumSquares):
            h = np.sum(h * h, axis=1, keepdims=True)
        out[layer.name] = h
    return out


@dataclass(frozen=True)
class Range:
    """What :func:`analyse` finds for one layer's output."""

    name: str
    low: float
    high: float
    frac: int
    #: bound on the magnitude of any partial sum (Dense, SumSquares), in units of 2^-frac
    partial_bound: float

    @property
    def fmt(self) -> Fmt:
        return Fmt.covering(self.low, self.high, self.frac)

    @property
    def accum_fmt(self) -> Fmt:
        """A type that holds every partial sum of this layer (signed)."""
        mag = self.partial_bound * 2.0**-self.frac
        return Fmt.covering(-mag, mag, self.frac)

    @property
    def bits(self) -> int:
        return math.ceil(math.log2(max(self.partial_bound, 1.0) + 1))


def analyse(layers: list[Layer], params: dict[str, tuple[np.ndarray, np.ndarray]],
            in_low: np.ndarray, in_high: np.ndarray, in_frac: int) -> list[Range]:
    """Interval bounds and fractional bits of every layer's output, from the weights.

    ``in_low``/``in_high`` ``[n_in]`` bound the inputs, which have ``in_frac`` fractional bits.
    """
    lo, hi = np.asarray(in_low, np.float64), np.asarray(in_high, np.float64)
    inp_lo, inp_hi, frac, inp_frac = lo, hi, in_frac, in_frac
    ranges: list[Range] = []
    for layer in layers:
        partial = 0.0
        if isinstance(layer, Dense):
            w, b = (np.asarray(a, np.float64) for a in params[layer.name])
            wp, wn = np.maximum(w, 0), np.minimum(w, 0)
            new_lo = lo @ wp + hi @ wn + b
            new_hi = hi @ wp + lo @ wn + b
            frac = frac + layer.weight.frac
            if layer.bias.frac > frac:
                raise ConfigError(f"layer {layer.name}: bias has {layer.bias.frac} fractional bits, "
                                  f"more than the product's {frac}")
            mag = np.maximum(np.abs(lo), np.abs(hi)) @ np.abs(w) + np.abs(b)
            partial = float(mag.max()) * 2.0**frac
            lo, hi = new_lo, new_hi
        elif isinstance(layer, ReLU | Quant):
            lo = np.clip(lo, layer.fmt.low, layer.fmt.high)
            hi = np.clip(hi, layer.fmt.low, layer.fmt.high)
            if isinstance(layer, ReLU):
                lo = np.maximum(lo, 0.0)
            frac = layer.fmt.frac
        elif isinstance(layer, SubInput):
            lo, hi = lo - inp_hi, hi - inp_lo
            frac = max(frac, inp_frac)
        elif isinstance(layer, SumSquares):
            sq_hi = np.maximum(lo**2, hi**2)
            sq_lo = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(lo**2, hi**2))
            lo, hi = np.array([sq_lo.sum()]), np.array([sq_hi.sum()])
            frac = 2 * frac
            partial = float(hi[0]) * 2.0**frac
        ranges.append(Range(layer.name, float(lo.min()), float(hi.max()), frac, partial))
    return ranges


def check_float32_exact(ranges: list[Range], where: str) -> None:
    """A ConfigError when an intermediate could need more than float32's 24 bits."""
    for r in ranges:
        bits = max(r.bits, math.ceil(math.log2(max(abs(r.low), abs(r.high)) * 2.0**r.frac + 1)))
        if bits > FLOAT32_BITS:
            raise ConfigError(
                f"{where}: layer {r.name!r} may need {bits} significant bits, more than float32's "
                f"{FLOAT32_BITS}, so QKeras (which computes in float32) would round it; use "
                "fewer input, weight or activation bits")


def describe(layers: list[Layer], ranges: list[Range]) -> list[dict[str, Any]]:
    """A JSON-able table of the layers with their exact output types."""
    rows = []
    for layer, r in zip(layers, ranges, strict=True):
        row: dict[str, Any] = {"name": layer.name, "kind": type(layer).__name__,
                               "output": r.fmt.ap, "low": r.low, "high": r.high}
        if isinstance(layer, Dense):
            row.update(weight=layer.weight.ap, bias=layer.bias.ap, shape=[layer.n_in, layer.n_out],
                       accumulator=r.accum_fmt.ap)
        elif isinstance(layer, ReLU | Quant):
            row.update(type=layer.fmt.ap)
        rows.append(row)
    return rows
