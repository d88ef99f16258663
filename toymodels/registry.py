"""Explicit tables of kinds (model kinds, data kinds, SAE kinds): one object per kind, found by
its name. Configs name a kind (``model.kind=relu``); they never hold import strings.

A user's own kind is one object registered from their own file or notebook
(``toymodels.models.MODELS.register(kind)``); see docs/kinds.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    """What a registry holds: a kind with a name (model, data, SAE and job kinds, loss terms)."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class ConfigError(ValueError):
    """A bad configuration value: names the key and what is allowed. Kinds raise it from their
    checks; ``sweeps`` reports it before any compute."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def _origin_of(kind) -> str:
    """Where a kind was written: the file of the module of its first function (so that a file
    imported as a module and loaded as a plugin is one origin), or that module's name when it has
    no file (``__main__`` for a notebook)."""
    import sys
    from pathlib import Path

    for value in vars(kind).values():
        module = getattr(value, "__module__", None) if callable(value) else None
        if module:
            file = getattr(sys.modules.get(module), "__file__", None)
            return str(Path(file).resolve()) if file else module
    return "__main__"


# Said wherever a kind's name is not found: a kind of the user's own may not be loaded.
MISSING_PLUGIN = (
    "; a kind of your own is registered by its plug-in file (plugins=[FILE]) or in your notebook: "
    "is one missing? (docs/kinds.md)"
)


class Registry(Generic[T]):
    """Kinds by name. The built-in kinds are fixed; a registered kind may replace one registered
    earlier from the same origin (a plugin file loaded again, a notebook cell run again), never a
    built-in one nor one from elsewhere."""

    def __init__(self, what: str, key: str, builtin: list[T]):
        self.what = what  # "model kind"
        self.key = key  # the config key that names one: "model.kind"
        self._kinds: dict[str, T] = {}
        self._origin: dict[str, str | None] = {}
        for kind in builtin:
            self._kinds[kind.name] = kind
            self._origin[kind.name] = None

    def register(self, kind: T, origin: str | None = None) -> T:
        """Add ``kind`` (under ``kind.name``); ``origin`` says where it came from (default: the
        module that defined it). Returns the kind, so a file can write ``KIND = register(...)``."""
        name = kind.name
        origin = origin or _origin_of(kind)
        if name in self._kinds:
            if self._origin[name] is None:
                raise ConfigError(
                    self.key, f"{name!r} is a built-in {self.what}; give yours another name"
                )
            if self._origin[name] != origin:
                raise ConfigError(
                    self.key,
                    f"{self.what} {name!r} is already registered from {self._origin[name]}",
                )
        self._kinds[name] = kind
        self._origin[name] = origin
        return kind

    def get(self, name: str) -> T:
        if name not in self._kinds:
            raise ConfigError(
                self.key,
                f"unknown {self.what} {name!r}; choose one of {', '.join(self._kinds)}"
                f"{MISSING_PLUGIN}",
            )
        return self._kinds[name]

    def origin(self, name: str) -> str | None:
        """Where kind ``name`` was registered from (None: built in)."""
        return self._origin.get(name)

    def find(self, name: str) -> T | None:
        """The kind, or None when it is not registered in this process (e.g. a user's kind whose
        file was not loaded)."""
        return self._kinds.get(name)

    def is_builtin(self, name: str) -> bool:
        return name in self._origin and self._origin[name] is None

    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def __contains__(self, name: str) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[T]:
        return iter(self._kinds.values())


def frozen_options(options) -> tuple:
    """Options as sorted (name, value) pairs with lists as tuples: hashable, so a spec holding them
    can key a compiled program."""

    def freeze(v):
        return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v

    return tuple(sorted((k, freeze(v)) for k, v in dict(options).items()))
