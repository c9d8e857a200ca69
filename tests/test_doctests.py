"""Every docstring example in the package runs, so that the examples stay true.

One test per module of ``darktrigger`` (found by walking the package, so a new module is
collected without touching this file), each run in a fresh temporary folder: an
example may write files with relative paths.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import darktrigger

#: Modules that are not imported here: running ``python -m darktrigger`` is the CLI itself.
NOT_IMPORTED = {"darktrigger.__main__"}


def _modules() -> list[str]:
    names = ["darktrigger"]
    for info in pkgutil.walk_packages(darktrigger.__path__, "darktrigger."):
        if info.name not in NOT_IMPORTED:
            names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_every_layer_is_walked() -> None:
    layers = {name.split(".")[1] for name in MODULES if name.count(".") >= 1}
    assert {"replay", "models", "firmware", "daq", "monitoring"} <= layers


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, extraglobs={"tmp_path": tmp_path}):
        runner.run(test, out=lambda text: pytest.fail(f"{name}: a docstring example failed\n{text}",
                                                     pytrace=False))
    runner.summarize(verbose=False)
