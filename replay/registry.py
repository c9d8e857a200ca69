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
    darktrigger.replay.errors.UnknownNameError: no colour named 'rde'; did you mean 'red'? Known: red
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from darktrigger.replay.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of classes filled by a decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

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
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"no {self.kind} named {name!r}{hint} Known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]
