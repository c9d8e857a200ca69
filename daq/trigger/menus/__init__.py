"""Example trigger menus shipped with darktrigger (package data).

``cms_like``: a Run-3-like CMS L1 menu at 2.0e34: the object seeds CMS ran unprescaled in
2024 (SingleMu22 … ETMHF100), five AXO-like anomaly seeds at the 2024 AXOL1TL working
points (3.8 … 0.45 kHz on zero bias) and a prescaled ZeroBias, counted at 28.61 MHz
against a 110 kHz budget. Its header says which numbers are CMS's and which are this
model's.

    >>> from darktrigger.daq.trigger.menu import Menu
    >>> menu = Menu.from_yaml(example_menu())
    >>> example_menu().name, len(menu), menu.budget_khz
    ('cms_like.yaml', 17, 110.0)
    >>> [s.params["rate_khz"] for s in menu.anomaly_seeds]
    [3.8, 2.2, 1.5, 1.1, 0.45]
"""

from __future__ import annotations

from pathlib import Path

from darktrigger.replay.errors import ConfigError

MENU_DIR = Path(__file__).parent


def example_menu(name: str = "cms_like") -> Path:
    """The path of a shipped example menu (``cms_like``: the Run-3-like CMS menu with AXO-like seeds)."""
    path = MENU_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in MENU_DIR.glob("*.yaml"))) or "none"
        raise ConfigError(f"no example menu {name!r}; shipped: {known}")
    return path
