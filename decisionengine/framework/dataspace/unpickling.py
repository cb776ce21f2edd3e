"""Unpickling payloads without running their code.

Whoever can write to the DataSpace's database must not be able to run code in the
server, the JSON API or a CLI that reads products.  Unpickling runs code: every global a
pickle names is imported and may be called with arguments the pickle chooses.  So every
payload read goes through :class:`RestrictedUnpickler`, whose ``find_class`` hands out
only what :class:`UnpicklePolicy` admits:

* the names of :data:`~decisionengine.framework.dataspace.allowlist.ALLOWED_GLOBALS`
  (data types of builtins, the standard library, numpy, pandas, pyarrow), also under the
  older names of :data:`~decisionengine.framework.dataspace.allowlist.OLDER_NAMES` and
  Python 2's names (``__builtin__``, ``copy_reg``) that protocol 0-2 pickles use.  A name
  and its older names are one entry: whichever the installed version has is imported, so
  NumPy 1 reads what NumPy 2 wrote and pandas 2 what pandas 3 named differently; an allowed
  name the installed versions do not have at all (:data:`~decisionengine.framework.dataspace.allowlist.NEWER_ONLY`)
  fails with an error saying which version wrote it;
* the framework's own classes of
  :data:`~decisionengine.framework.dataspace.allowlist.FRAMEWORK_CLASSES`, each of which
  checks the state a pickle gives it in its own ``__setstate__`` (``publisher_status``);
* classes of the operator's ``dataspace.trusted_modules`` (for channels that store
  instances of their own classes): see :meth:`UnpicklePolicy.trusts`.

Anything else raises :class:`~decisionengine.framework.dataspace.errors.UntrustedPayloadError`
*before* it is imported, so nothing of a refused payload runs.  An allow-list, not a
deny-list: a deny-list misses the next gadget (there are many: ``pandas.read_pickle``,
``numpy.load``, ``functools.partial``, ``operator.methodcaller``...).

Callables that call or look up what they are given cannot be allowed as they are:
``builtins.getattr``, ``collections.defaultdict`` (its ``default_factory`` is called
later), ``copyreg._reconstructor`` (instantiates its class argument).  The policy hands
out checking versions of them instead, and of the reconstruction helpers that trust the
structure they rebuild (:mod:`.checked_globals`: pandas block managers and categoricals,
Arrow arrays, protocol 2's ``_codecs.encode``).

A payload the installed pandas or NumPy cannot rebuild (written by another major version:
pandas 2 cannot make pandas 3's ``str`` dtype) fails with a ``pickle.UnpicklingError``
saying so, not with whatever ``TypeError`` the library's constructor raised; the
DataSpace reports it as a ``CorruptPayloadError`` naming the product.

Cost: ``find_class`` runs once per global a payload names (the pickler memoizes
repeated globals), not per object, and each decision is cached, so reading a large
frame costs what ``pickle.loads`` costs (``benchmarks/dataspace.py`` measures it).
"""

from __future__ import annotations

import _compat_pickle
import collections
import copyreg
import enum
import importlib
import inspect
import io
import keyword
import pickle
import sys
from collections.abc import Callable, Iterable
from typing import Any

from decisionengine.framework.dataspace.allowlist import ALLOWED_GLOBALS, FRAMEWORK_CLASSES, NEWER_ONLY, OLDER_NAMES
from decisionengine.framework.dataspace.checked_globals import CHECKED
from decisionengine.framework.dataspace.errors import UntrustedPayloadError

__all__ = [
    "DEFAULT_POLICY",
    "TRUSTABLE_MODULE",
    "RestrictedUnpickler",
    "UnpicklePolicy",
    "UntrustedPayloadError",
    "check_trusted_module",
    "import_allowed",
    "loads",
]

Global = tuple[str, str]

#: Libraries whose data types the allow-list already names; trusting a whole one of them
#: would admit classes that are not data (``subprocess.Popen``, ``pandas.HDFStore``).
ALLOW_LISTED_LIBRARIES = ("numpy", "pandas", "pyarrow", "dateutil", "pytz")
UNTRUSTABLE = frozenset(sys.stdlib_module_names) | frozenset(ALLOW_LISTED_LIBRARIES)
#: What a trusted module must be, in words (for configuration errors)
TRUSTABLE_MODULE = (
    f"a module name (dotted identifiers), not of the standard library, {', '.join(ALLOW_LISTED_LIBRARIES)}"
)

#: What ``copyreg._reconstructor`` may use as the base of an allowed class (protocols 0, 1).
RECONSTRUCTOR_BASES: frozenset[type] = frozenset(
    {object, int, float, complex, str, bytes, bytearray, tuple, list, dict, set, frozenset}
)
#: What a ``collections.defaultdict`` may call to make a missing value.
DEFAULTDICT_FACTORIES: frozenset[Any] = frozenset(
    {None, int, float, complex, str, bytes, bytearray, tuple, list, dict, set, frozenset, bool}
    | {collections.OrderedDict, collections.Counter, collections.deque}
)

_ALLOWED: frozenset[Global] = frozenset((module, name) for module, names in ALLOWED_GLOBALS.items() for name in names)
#: {allowed name: its older names}, to import an allowed name where only an older one exists
_OLDER_OF: dict[Global, tuple[Global, ...]] = {}
for _old, _current in OLDER_NAMES.items():
    _OLDER_OF[_current] = (*_OLDER_OF.get(_current, ()), _old)
del _old, _current

#: Errors a library raises when it cannot rebuild a value from the arguments or state a
#: pickle gives it (a class of another version: ``StringDtype.__init__() takes ...``)
REBUILD_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, NotImplementedError)


def check_trusted_module(name: Any) -> None:
    """Raise ``ValueError`` saying why ``name`` cannot be a trusted module."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a trusted module is a module name, not {name!r}")
    parts = name.split(".")
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
        raise ValueError(f"{name!r} is not a module name (dotted Python identifiers)")
    if parts[0] in UNTRUSTABLE:
        raise ValueError(
            f"{name!r} cannot be trusted: it belongs to the standard library or {', '.join(ALLOW_LISTED_LIBRARIES)}, "
            "whose data types are allowed already and whose other classes are not data"
        )


def _python3_name(module: str, name: str) -> Global:
    """The Python 3 name of a global a protocol 0-2 pickle names the Python 2 way (what
    ``pickle`` itself does with ``fix_imports``), e.g. ``__builtin__.set``."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _import(module: str, name: str) -> Any:
    """The object ``module.name`` (``name`` may be dotted).  Only for names already admitted."""
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def import_allowed(module: str, name: str) -> Any:
    """The object the allowed name ``module.name`` stands for in the installed versions:
    under that name, else under the first of its older names that exists here (NumPy 1.26
    has NumPy 2's ``numpy._core.numeric._frombuffer`` as ``numpy.core.numeric._frombuffer``).
    Raises ``pickle.UnpicklingError`` saying which version has it when none exists here.
    Only for names already admitted: every name tried is one of the allow-list's."""
    first_error: Exception | None = None
    for candidate in ((module, name), *_OLDER_OF.get((module, name), ())):
        try:
            return _import(*candidate)
        except (ImportError, AttributeError) as exc:
            first_error = first_error or exc
    raise pickle.UnpicklingError(_absent(module, name)) from first_error


def framework_class(module: str, name: str) -> type:
    """The framework class ``module.name`` of ``FRAMEWORK_CLASSES``, if it is a class defined
    there that checks its state in a ``__setstate__`` of its own; else the payload is
    refused (a class that lost its check is not admitted by its name alone)."""
    found = _import(module, name)
    if not (isinstance(found, type) and found.__module__ == module and "__setstate__" in vars(found)):
        raise UntrustedPayloadError(f"{module}.{name}")
    return found


def _absent(module: str, name: str) -> str:
    """Why the allowed ``module.name`` cannot be had here, for the error."""
    library = module.partition(".")[0]
    try:
        installed = importlib.import_module(library)
    except ImportError:
        return f"the payload refers to {module}.{name}, a data type of {library}, which is not installed here"
    version = getattr(installed, "__version__", "?")
    since = NEWER_ONLY.get((module, name), (library, ""))[1]
    newer = f" (it exists from {library} {since} on)" if since else ""
    return (
        f"the payload refers to {module}.{name}, which the installed {library} {version} does not have{newer}: "
        f"it was written by another version of {library}. {ONE_VERSION}"
    )


#: What the errors for payloads of another version say about it
ONE_VERSION = (
    "What a newer pandas or NumPy writes, an older one cannot always read: a DataSpace holds the "
    "products of one pandas major version, so upgrade the processes that read it before or with "
    "those that write it (README, 'Supported versions')"
)


def _installed_versions() -> str:
    """The versions of the libraries that rebuild payloads, those imported so far."""
    found = [
        f"{label} {getattr(sys.modules[module], '__version__', '?')}"
        for module, label in (("pandas", "pandas"), ("numpy", "NumPy"), ("pyarrow", "pyarrow"))
        if module in sys.modules
    ]
    return ", ".join(found) or "libraries"


class UnpicklePolicy:
    """What payloads may refer to: the built-in allow-list plus the classes of
    ``trusted_modules`` (each entry admits that module and its submodules: ``"mychannel"``
    trusts ``mychannel`` and ``mychannel.sources``, not ``mychannel_extra``).

    Decisions are cached per policy (the same answer for the same name, so threads may
    share one policy).
    """

    def __init__(self, trusted_modules: Iterable[str] = ()) -> None:
        if isinstance(trusted_modules, str):
            raise ValueError(f"trusted modules are a list of module names, not the string {trusted_modules!r}")
        modules = tuple(trusted_modules)
        for name in modules:
            check_trusted_module(name)
        self.trusted_modules: tuple[str, ...] = tuple(sorted(set(modules)))
        self._cache: dict[Global, Any] = {}  # admitted names only: a refusal is never stored
        self._checked: dict[Global, Callable[..., Any]] = {
            ("builtins", "getattr"): self._getattr,
            ("collections", "defaultdict"): self._defaultdict,
            ("copyreg", "_reconstructor"): self._reconstructor,
            **CHECKED,
        }

    def __repr__(self) -> str:
        return f"UnpicklePolicy(trusted_modules={list(self.trusted_modules)!r})"

    # -- deciding ---------------------------------------------------------------------------

    def find(self, module: str, name: str) -> Any:
        """The object a payload may use for the global ``module.name``; raises
        :class:`UntrustedPayloadError` (before importing anything) for any other."""
        key = (module, name)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._cache[key] = self._resolve(module, name)
        return found

    def _resolve(self, module: str, name: str) -> Any:
        key = _python3_name(module, name)
        current = OLDER_NAMES.get(key, key)
        if current in self._checked:
            return self._checked[current]
        if current in _ALLOWED:
            return import_allowed(*current)
        if key in FRAMEWORK_CLASSES:
            return framework_class(*key)
        found = self._trusted_object(*key)
        if found is None:
            raise UntrustedPayloadError(f"{module}.{name}")
        return found

    def trusts(self, module: str) -> bool:
        """Whether ``module`` is one of the trusted modules or inside one of them."""
        return any(module == trusted or module.startswith(trusted + ".") for trusted in self.trusted_modules)

    def _trusted_object(self, module: str, name: str) -> Any:
        """A class (or an enum member or class method of one) defined in a trusted module,
        else None.  Classes a trusted module merely imports (``subprocess.Popen``) are not
        its own and stay refused; plain functions are never admitted."""
        if not self.trusts(module):
            return None
        found: Any = importlib.import_module(module)
        owner: Any = None
        for part in name.split("."):
            if owner is not None and not self._own_class(found):
                return None  # only walk through the trusted module's own classes
            owner, found = found, getattr(found, part, None)
        if self._own_class(found):
            return found
        if isinstance(found, enum.Enum) and type(found) is owner and self._own_class(owner):
            return found
        if inspect.ismethod(found) and found.__self__ is owner and self._own_class(owner):
            return found  # a classmethod, e.g. an alternative constructor
        return None

    def _own_class(self, candidate: Any) -> bool:
        return isinstance(candidate, type) and self.trusts(getattr(candidate, "__module__", None) or "")

    def admits(self, cls: Any) -> bool:
        """Whether the class ``cls`` is one a payload may name."""
        if not isinstance(cls, type):
            return False
        try:
            return self.find(cls.__module__, cls.__qualname__) is cls
        except Exception:
            return False

    # -- the checking versions of callables that call what they are given ------------------

    def _getattr(self, owner: Any, attribute: Any) -> Any:
        """``getattr`` as pickles use it: to name an attribute of a class (a bound class
        method such as ``zoneinfo.ZoneInfo._unpickle``).  Allowed when ``Class.attribute``
        itself is an allowed global."""
        if not (isinstance(owner, type) and isinstance(attribute, str) and self.admits(owner)):
            raise UntrustedPayloadError(f"builtins.getattr({_describe(owner)}, {attribute!r})")
        return self.find(owner.__module__, f"{owner.__qualname__}.{attribute}")

    def _defaultdict(self, default_factory: Any = None, *args: Any) -> collections.defaultdict:
        """``collections.defaultdict`` whose ``default_factory`` (called on every missing
        key, long after loading) is a plain data type or None."""
        if not _is_one_of(default_factory, DEFAULTDICT_FACTORIES):
            raise UntrustedPayloadError(f"collections.defaultdict(default_factory={_describe(default_factory)})")
        return collections.defaultdict(default_factory, *args)

    def _reconstructor(self, cls: Any, base: Any, state: Any) -> Any:
        """``copyreg._reconstructor`` (protocols 0 and 1) for an allowed class on a
        builtin base."""
        if not (self.admits(cls) and _is_one_of(base, RECONSTRUCTOR_BASES) and issubclass(cls, base)):
            raise UntrustedPayloadError(f"copyreg._reconstructor({_describe(cls)}, {_describe(base)})")
        return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]


def _is_one_of(value: Any, allowed: frozenset[Any]) -> bool:
    """Identity, not equality: a payload's object must not get to answer ``==``."""
    return any(value is candidate for candidate in allowed)


def _describe(value: Any) -> str:
    """A class or function as ``module.qualname`` (by the allow-list's name for it, the same
    on every version: ``pandas.DataFrame``, which pandas 2 defines in ``pandas.core.frame``),
    anything else as ``<module.type object>``."""
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        key = (getattr(value, "__module__", None) or "?", value.__qualname__)
        module, name = OLDER_NAMES.get(key, key)
        return f"{module}.{name}"
    return f"<{type(value).__module__}.{type(value).__qualname__} object>"


DEFAULT_POLICY = UnpicklePolicy()


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that asks ``policy`` for every global."""

    def __init__(self, file: io.BytesIO, policy: UnpicklePolicy = DEFAULT_POLICY) -> None:
        super().__init__(file)
        # the unpickler looks find_class up on the instance: the policy answers directly
        self.find_class = policy.find  # type: ignore[method-assign]

    def find_class(self, module: str, name: str) -> Any:
        return DEFAULT_POLICY.find(module, name)  # only if __init__ was bypassed


def loads(data: bytes, policy: UnpicklePolicy = DEFAULT_POLICY) -> Any:
    """Unpickle ``data`` admitting only what ``policy`` allows (see the module docstring).

    A value the installed libraries cannot rebuild from what the payload gives them (their
    constructors and ``__setstate__`` raise ``TypeError``, ``NotImplementedError``...) is a
    ``pickle.UnpicklingError`` that names the installed versions and the likely cause, a
    payload of another major version, with the library's own error after it."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), policy).load()
    except REBUILD_ERRORS as exc:
        raise pickle.UnpicklingError(
            f"the installed {_installed_versions()} cannot rebuild the payload ({type(exc).__name__}: {exc}): "
            f"it is damaged, or it was written by another version. {ONE_VERSION}"
        ) from exc
