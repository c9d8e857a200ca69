"""The trigger menu: seeds, per-event decisions, and the rates they give.

- :mod:`~darktrigger.daq.trigger.seeds`: the seed types (single/double objects, HT, MET,
  anomaly scores), each registered by its YAML ``type``;
- :mod:`~darktrigger.daq.trigger.menu`: a menu of seeds from YAML, its decisions and the
  calibration of anomaly thresholds from target rates;
- :mod:`~darktrigger.daq.trigger.decision`: one batch's decisions as bit masks;
- :mod:`~darktrigger.daq.trigger.rates`: counts and weighted sums, rates at the
  colliding-bunch rate, pure rates, overlaps and the budget;
- :mod:`~darktrigger.daq.trigger.efficiency`: a signal's efficiency per seed, its unique
  efficiency, and what the anomaly seeds add to the rest of the menu;
- :mod:`~darktrigger.daq.trigger.scan`: rates against threshold for single objects and sums;
- :mod:`~darktrigger.daq.trigger.menus`: the example menus shipped as package data.

    >>> from darktrigger.daq.trigger import Menu
    >>> Menu.from_dict({"seeds": [{"name": "MET90", "type": "met", "met_min": 90}]}).names
    ('MET90',)
"""

from __future__ import annotations

from darktrigger.daq.trigger.decision import DEFAULT_BX_RATE_MHZ, Decision
from darktrigger.daq.trigger.menu import Menu, calibrate_menu
from darktrigger.daq.trigger.rates import MenuCounts

__all__ = ["DEFAULT_BX_RATE_MHZ", "Decision", "Menu", "MenuCounts", "calibrate_menu"]
