"""Load the user's rules into the registry before a command runs: ``--plugin`` and installed packages.

A plugin is ordinary Python that calls :func:`distlab.rules.register` when imported (see README, "Add your
own rule"). Why a loader at all: a rule registered in a notebook reaches every study through the runner,
but a command line has no place to run the user's code; ``distlab study/train/rules --plugin X`` gives it one.

Two ways in:

* ``--plugin SPEC`` (repeatable): a module name importable on ``sys.path`` (``my_lab.rules``), or the path
  of a ``.py`` file (``my_rule.py``, ``~/rules/kl.py``);
* installed packages declare an entry point in the group ``distlab.rules`` (``[project.entry-points.
  "distlab.rules"] my-rules = "my_lab.rules"``); every command that takes ``--plugin`` loads them. An entry
  point may name a module (importing it registers) or a callable (called with no arguments).

Each plugin loads once per process (a second ``--plugin`` of the same file, or a module that is also an
entry point, does not register its rules twice). Rules registered here reach the study runner's worker
processes with the cells (:mod:`distlab.runner`), so a plugin is loaded in the main process only.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

__all__ = ["ENTRY_POINT_GROUP", "PLUGIN_HELP", "PluginError", "load_plugin", "load_entry_points", "load_plugins"]

ENTRY_POINT_GROUP = "distlab.rules"
# the help of every command's --plugin option (distlab study, train, rules)
PLUGIN_HELP = ("load your rules first: a module name on sys.path or a .py file that calls distlab.rules.register "
               "(repeatable; installed 'distlab.rules' entry points load too)")

_LOADED_ENTRY_POINTS: set[str] = set()


class PluginError(ValueError):
    """A plugin that cannot be found or fails while loading (names the plugin and the cause)."""


def _is_path(spec: str) -> bool:
    """A spec with a ``.py`` suffix or a path separator is a file; anything else a module name."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _module_name_of_file(path: Path) -> str:
    """A ``sys.modules`` name unique to the file: its stem plus a hash of its absolute path."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"distlab_plugin_{stem}_{digest}"


def _load_file(spec: str) -> ModuleType:
    path = Path(spec).expanduser().resolve()
    if path.suffix != ".py":
        raise PluginError(f"plugin {spec!r}: a plugin file must be a .py file; or give a module name importable on sys.path")
    if not path.is_file():
        raise PluginError(f"plugin {spec!r}: no such file ({path}); give the path of a .py file or a module name")
    name = _module_name_of_file(path)
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before running it, as import does: dataclasses and pickling look it up
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise PluginError(f"plugin {spec!r} failed while loading: {type(err).__name__}: {err}") from err
    return module


def _load_module(spec: str) -> ModuleType:
    if spec in sys.modules:
        return sys.modules[spec]
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as err:
        if err.name is not None and spec.split(".")[0] == err.name.split(".")[0]:
            raise PluginError(f"plugin {spec!r}: no module named {err.name!r} on sys.path; give a module name "
                              f"importable on sys.path or the path of a .py file") from None
        raise PluginError(f"plugin {spec!r} failed while loading: {type(err).__name__}: {err}") from err
    except Exception as err:
        raise PluginError(f"plugin {spec!r} failed while loading: {type(err).__name__}: {err}") from err


def load_plugin(spec: str) -> ModuleType:
    """Import one plugin (a module name or a ``.py`` path) once; :class:`PluginError` if it cannot."""
    if not spec or not spec.strip():
        raise PluginError("empty plugin name; give a module name importable on sys.path or the path of a .py file")
    return _load_file(spec) if _is_path(spec) else _load_module(spec)


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load every installed entry point of ``group`` not loaded yet; the names loaded now."""
    from importlib.metadata import entry_points

    loaded = []
    for point in entry_points(group=group):
        key = f"{group}:{point.name}={point.value}"
        if key in _LOADED_ENTRY_POINTS:
            continue
        try:
            target = point.load()
            if callable(target) and not isinstance(target, ModuleType):
                target()
        except Exception as err:
            raise PluginError(f"entry point {point.name!r} ({point.value}) of group {group!r} failed while loading: "
                              f"{type(err).__name__}: {err}") from err
        _LOADED_ENTRY_POINTS.add(key)
        loaded.append(point.name)
    return loaded


def load_plugins(specs: Iterable[str] | None = (), *, entry_points: bool = True) -> list[str]:
    """Load the installed ``distlab.rules`` entry points (unless ``entry_points=False``), then each of
    ``specs`` in order: what a command taking ``--plugin`` does before it runs. Returns what was loaded."""
    loaded = load_entry_points() if entry_points else []
    for spec in specs or ():
        load_plugin(spec)
        loaded.append(spec)
    return loaded
