from __future__ import annotations

import math

import numpy as np
import pytest

from darktrigger.replay.errors import SchemaError
from darktrigger.replay.events import FEATURE_NAMES, N_FEATURES, SLOT_TYPES, EventBatch
from darktrigger.replay.objects import pack_slots, set_met, wrap_phi
from darktrigger.replay.testing import random_batch


def test_layout_constants():
    assert len(SLOT_TYPES) == 19
    assert N_FEATURES == 57 == len(FEATURE_NAMES)
    assert SLOT_TYPES[0] == "met"
    assert SLOT_TYPES[1:5] == ("egamma",) * 4
    assert SLOT_TYPES[5:9] == ("muon",) * 4
    assert SLOT_TYPES[9:] == ("jet",) * 10
    assert FEATURE_NAMES[:4] == ("met_pt", "met_eta", "met_phi", "egamma0_pt")
    assert FEATURE_NAMES[-1] == "jet9_phi"


def test_flat_view_is_the_block_without_copy(batch):
    flat = batch.flat
    assert flat.shape == (1000, 57)
    assert np.shares_memory(flat, batch.objects)
    assert flat[7, 3 * 5 + 2] == batch.objects[7, 5, 2]


def test_slicing_masks_and_concat_keep_every_column():
    b = random_batch(100, extra=True)
    assert len(b[10:20]) == 10
    assert b[10:20]["mjj"][0] == b["mjj"][10]
    mask = b["mjj"] > 3000
    assert len(b[mask]) == int(mask.sum())
    both = EventBatch.concat([b[:30], b[30:]])
    for name in b.columns:
        np.testing.assert_array_equal(both[name], b[name])
    with pytest.raises(SchemaError, match="columns"):
        EventBatch.concat([b, b.without("mjj")])


def test_structure_errors_name_the_column():
    b = random_batch(5)
    cols = dict(b.columns)
    cols["objects"] = cols["objects"].astype(np.float64)
    with pytest.raises(SchemaError, match="'objects'.*float32"):
        EventBatch(cols)
    cols = dict(b.columns)
    cols["run"] = cols["run"][:3]
    with pytest.raises(SchemaError, match="'run' has 3 rows"):
        EventBatch(cols)
    cols = dict(b.columns)
    del cols["weight"]
    with pytest.raises(SchemaError, match="missing column.*weight"):
        EventBatch(cols)
    with pytest.raises(SchemaError, match="'objects'.*shape"):
        EventBatch({**b.columns, "objects": np.zeros((5, 18, 3), np.float32)})


@pytest.mark.parametrize(
    ("slot", "q", "value", "message"),
    [
        (3, 0, np.nan, r"row 2: objects slot 3 \(egamma\) has pT = nan, expected a finite number"),
        (12, 1, np.inf, r"row 2: objects slot 12 \(jet\) has eta = inf"),
        (6, 0, -5.0, r"row 2: objects slot 6 \(muon\) has pT = -5.0, expected pT >= 0"),
        (9, 2, 4.0, r"row 2: objects slot 9 \(jet\) has phi = 4.0, expected phi in \[-pi, pi\]"),
    ],
)
def test_value_errors_name_row_slot_and_expectation(slot, q, value, message):
    b = random_batch(10)
    b.objects[2, slot, q] = value
    with pytest.raises(SchemaError, match=message):
        b.validate()
    assert [r for r, _ in b.problems()] == [2]


def test_phi_at_plus_minus_pi_is_valid_and_nan_in_extra_column_is_not():
    b = random_batch(4, extra=True)
    b.objects[0, 9, :] = (10, 0, math.pi)
    b.objects[1, 9, :] = (10, 0, -math.pi)
    b.validate()
    b["mjj"][3] = np.nan
    with pytest.raises(SchemaError, match="row 3: column 'mjj' is nan"):
        b.validate()


def test_with_columns_adds_scores_with_the_right_dtype(batch):
    scored = batch.with_columns(**{"score/ae": np.arange(len(batch))})
    assert scored["score/ae"].dtype == np.float32
    assert "score/ae" in scored.extra_names
    assert "score/ae" not in batch
    with pytest.raises(SchemaError, match="required"):
        batch.without("objects")


def test_pack_slots_sorts_keeps_highest_and_counts_overflow():
    block = np.zeros((3, 19, 3), np.float32)
    # event 0: six electrons out of pT order; event 2: one; event 1: none
    ev = np.array([0, 0, 0, 0, 0, 0, 2])
    pt = np.array([5.0, 50.0, 20.0, 40.0, 10.0, 30.0, 7.0])
    eta = np.arange(7, dtype=float)
    dropped = pack_slots(block, "egamma", ev, pt, eta, np.zeros(7))
    np.testing.assert_array_equal(block[0, 1:5, 0], [50, 40, 30, 20])
    np.testing.assert_array_equal(block[0, 1:5, 1], [1, 3, 5, 2])
    assert block[2, 1, 0] == 7
    assert not block[1].any()
    np.testing.assert_array_equal(dropped, [2, 0, 0])
    set_met(block, np.array([0.0, 12.0, 3.0]), np.array([1.0, 2.0, -3.0]))
    assert block[0, 0, 2] == 0
    assert block[1, 0].tolist() == [12.0, 0.0, 2.0]
    assert np.allclose(wrap_phi(np.array([np.pi + 0.1, -np.pi - 0.1, 7.0])),
                       [-np.pi + 0.1, np.pi - 0.1, 7.0 - 2 * np.pi])


def test_empty_batch_and_from_objects_defaults():
    e = EventBatch.empty(extra=["mjj"])
    assert len(e) == 0
    assert "mjj" in e
    b = EventBatch.from_objects(np.zeros((3, 19, 3)), truth=10)
    assert b["event"].tolist() == [0, 1, 2]
    assert b["truth"].dtype == np.int16
    assert b["truth"].tolist() == [10, 10, 10]
    assert b.problems() == []
