"""The traced fixed-point primitives of :mod:`darktrigger.firmware.rtl`, on every value.

``quantise`` (round half to even beside the saturation), ``round_half_even`` on a
negatively scaled variable (its tie test reads the other variable's LSB) and
``sum_of_squares`` (shift-and-add) against the numpy reference
(:meth:`~darktrigger.models.quantised.fixedpoint.Fmt.quantize`, exact products), on every
value a 12-bit input takes, through da4ml's own interpreter of the traced logic. The
Verilog of whole networks is checked bit for bit in ``test_firmware_100k.py``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import pytest

from darktrigger.firmware import rtl
from darktrigger.models.quantised.fixedpoint import Fmt

#: every value of ap_fixed<12,6>: ties, both saturation edges and beyond them included
GRID = np.arange(-(2**11), 2**11, dtype=np.float64) / 2.0**6


def _run(build: object) -> np.ndarray:
    """da4ml's interpreter on GRID of the logic ``build(x, one)`` traces (outputs stacked)."""
    from da4ml.trace import FixedVariableArray, FixedVariableArrayInput, HWConfig, comb_trace

    inp = FixedVariableArrayInput((1,), hwconf=HWConfig(1, -1, -1), solver_options={"hard_dc": 0})
    x = inp.quantize(k=1, i=5, f=6).ravel()[0]
    outs = build(x, x)  # type: ignore[operator]
    with contextlib.redirect_stdout(io.StringIO()):
        comb = comb_trace(inp, FixedVariableArray(np.array(outs, dtype=object)))
    return np.asarray(comb.predict(GRID.reshape(-1, 1), n_threads=1)).reshape(len(GRID), -1)


@pytest.mark.parametrize("fmt", [Fmt(8, 3, signed=False), Fmt(8, 3), Fmt(6, 2), Fmt(10, 5), Fmt(9, 2, signed=False)],
                         ids=str)
def test_quantise_equals_the_reference_on_every_value_of_either_sign(fmt: Fmt) -> None:
    # x * 0.75 has a positive scale (da4ml's factor), its negation the same wire with a
    # negative one; both have more fractional bits than fmt, so every tie and both
    # saturations occur
    def build(x: Any, one: Any) -> list[Any]:
        pos = x * 0.75
        neg = -pos
        assert pos._factor > 0 > neg._factor
        return [rtl.quantise(pos, fmt, one), rtl.quantise(neg, fmt, one)]

    got = _run(build)
    np.testing.assert_array_equal(got[:, 0], fmt.quantize(GRID * 0.75))
    np.testing.assert_array_equal(got[:, 1], fmt.quantize(GRID * -0.75))
    ties = (GRID * 0.75 * 2.0**fmt.frac) % 1 == 0.5
    assert ties.sum() > 100  # the half-to-even cases are exercised
    assert (got[:, 0] == fmt.high).sum() > 1
    assert (got[:, 1] == fmt.low).sum() > 1


def test_sum_of_squares_is_exact() -> None:
    fmt = Fmt(10, 5)
    got = _run(lambda x, one: [rtl.sum_of_squares([rtl.quantise(x, fmt, one), rtl.quantise(x * -0.5, fmt, one)])])
    a, b = fmt.quantize(GRID), fmt.quantize(GRID * -0.5)
    np.testing.assert_array_equal(got[:, 0], a * a + b * b)


@pytest.mark.parametrize("value", [0.203125, 0.7265625, -0.203125, 3.984375, -7.5, 0.0])
def test_a_constant_unit_is_quantised_as_the_reference(value: float) -> None:
    """A unit whose weights were all pruned is its bias, a constant: da4ml's own wrap of an
    unsigned constant keeps one bit too many, which once broke the rounding's LSB slice
    (a toy-trained qaxo's RTL equalled QKeras on 7 of 1,000 test vectors)."""
    from da4ml.trace import FixedVariable

    fmts = [Fmt(8, 3, signed=False), Fmt(8, 3), Fmt(6, 2)]

    def build(x: Any, one: Any) -> list[Any]:
        c = FixedVariable.from_const(value, hwconf=x.hwconf, _factor=1)
        return [x * 0.5, *(rtl.quantise(c, fmt, one) for fmt in fmts)]  # x keeps the input alive

    got = _run(build)
    for j, fmt in enumerate(fmts, start=1):
        np.testing.assert_array_equal(got[:, j], fmt.quantize(np.full(len(GRID), value)))
