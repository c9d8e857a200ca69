"""Name → class registries, used for readers, generators, scorers and trigger seeds.

    >>> from darktrigger.replay.registry import Registry
    >>> COLOURS = Registry("colour")
    >>> @COLOURS.register("red")
    ... class Red: ...
    >>> COLOURS.get("red") is Red
    True
    >>> COLOURS.get("rde")
    Traceback (most recent call last):
    ...
    darktrigger.replay.errors.UnknownNameError: no colour named 'rde'; did you mean 'red'? Known: red.
    >>> COLOURS.get("RED")
    Traceback (most recent call last):
    ...
    darktrigger.replay.errors.UnknownNameError: no colour named 'RED'; did you mean 'red'? Known: red.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from darktrigger.replay.errors import UnknownNameError

T = TypeVar("T")


def unknown_name(kind: str, name: str, known: Iterable[str], keep_order: bool = False,
                 missing: str | None = None) -> str:
    """The message for a name that is not among ``known``, with the nearest one (any case);
    ``known`` is listed sorted unless ``keep_order`` (a scorer's variants, default first).
    ``missing`` replaces the opening "no <kind> named <name>" where the caller says it better.

        >>> unknown_name("hyper-parameter", "latnet", ["epochs", "latent"])
        "no hyper-parameter named 'latnet'; did you mean 'latent'? Known: epochs, latent."
    """
    known = list(known) if keep_order else sorted(known)
    lowered = {k.lower(): k for k in known}
    key = str(name).lower()
    close = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.6) or \
        [k for k in lowered if key and k.startswith(key)][:1]
    hint = f"; did you mean {lowered[close[0]]!r}?" if close else "."
    opening = missing or f"no {kind} named {name!r}"
    return f"{opening}{hint} Known: {', '.join(known) or '(none)'}."


class Registry(Generic[T]):
    """A named collection of classes filled by a decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._loader: Callable[[], object] | None = None

    def load_with(self, loader: Callable[[], object]) -> None:
        """Call ``loader`` (which imports the modules that register entries) before the first
        look-up, so that the package that owns the registry need not import them eagerly."""
        self._loader = loader

    def _load(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader()

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            try:
                obj.name = name  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover - builtins
                pass
            return obj

        return decorate

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name(self.kind, name, self.names())) from None

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register an entry of their own)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]
