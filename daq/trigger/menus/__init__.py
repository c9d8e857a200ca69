"""Example trigger menus shipped with darktrigger (package data).

    >>> example_menu().name
    'cms_like.yaml'
"""

from __future__ import annotations

from pathlib import Path

from darktrigger.replay.errors import ConfigError

MENU_DIR = Path(__file__).parent


def example_menu(name: str = "cms_like") -> Path:
    """The path of a shipped example menu (``cms_like``: CMS-style seeds and AXO-like seeds)."""
    path = MENU_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in MENU_DIR.glob("*.yaml"))) or "none"
        raise ConfigError(f"no example menu {name!r}; shipped: {known}")
    return path
