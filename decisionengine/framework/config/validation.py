"""Channel validation: everything that can be checked before a channel runs.

:func:`validate_channel` turns a structurally valid :class:`~.channel_file.ChannelConfig`
into a :class:`~.plan.ChannelPlan`, or raises :class:`ChannelValidationError` listing every
problem, each naming the module key (``transforms.t1``) and the product or fact concerned.

Steps, per module: import the module file and find the class (``name``, or the only class
of the expected kind defined in the file); check its parameters (:mod:`.parameters`);
**construct an instance** with them and read ``_produces``/``_consumes`` from it; a source,
transform or publisher that declares nothing it needs to (or a publisher without
``publish``) refuses the channel (:func:`missing_declarations`).

Why construct: the framework's contract is that these are attributes, and some modules
set them on the instance (``EmptySource`` derives its product's name from a parameter),
so only an instance tells the truth.  The logic engine also parses its facts and rules
when constructed, which is exactly the load-time check wanted.  The instances are thrown
away; the task manager creates its own (possibly in another process) with
:meth:`~.plan.ModuleSpec.create`.  A module's constructor should therefore be cheap and
must not assume it will be the instance that runs.

Then the product graph: every consumed product (by transforms, the logic engine's facts
and publishers) must have exactly one producer; transforms are ordered with graphlib and a
cycle among them is an error naming the modules and products; every action of the logic
engine's rules must name a publisher.
"""

from __future__ import annotations

import copy
import graphlib
import importlib
import inspect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.config.channel_file import ChannelConfig, ModuleEntry
from decisionengine.framework.config.errors import ConfigError
from decisionengine.framework.config.parameters import check_parameters
from decisionengine.framework.config.plan import ChannelPlan, ModuleSpec
from decisionengine.framework.logicengine.facts import explain
from decisionengine.framework.logicengine.LogicEngine import LogicEngine
from decisionengine.framework.logicengine.policy import publisher_policy
from decisionengine.framework.modules.decorators import declared_products
from decisionengine.framework.modules.Publisher import Publisher
from decisionengine.framework.modules.Source import Source
from decisionengine.framework.modules.Transform import Transform
from decisionengine.framework.util.frozen import FrozenDict

#: Products the task manager puts in every generation's block for the modules to consume
#: (``publisher_status``: see ``taskmanager.PublisherStatus``); no module may produce them.
FRAMEWORK_PRODUCTS = frozenset({"publisher_status"})

#: module kind -> the class every module of that kind must derive from
BASES: dict[str, type] = {"source": Source, "transform": Transform, "logicengine": LogicEngine, "publisher": Publisher}


class ChannelValidationError(ConfigError):
    """A channel cannot run; ``problems`` name the module key and what is wrong."""

    def __init__(self, channel: str, path: str | None, problems: list[str]) -> None:
        self.channel = channel
        super().__init__(f"channel {channel!r}" + (f" ({path})" if path else ""), problems)
        self.path = path


class _EntryProblem(Exception):
    """One module entry cannot be used (message already names the entry)."""


def _exception_text(exc: BaseException) -> str:
    return explain(exc)


def resolve_class(entry: ModuleEntry) -> type:
    """Import ``entry.module`` and return its class (by ``name`` or as the only one of its kind)."""
    base = BASES[entry.kind]
    try:
        module = importlib.import_module(entry.module)
    except Exception as exc:
        raise _EntryProblem(f"{entry.path}: cannot import module {entry.module!r}: {_exception_text(exc)}") from exc
    if entry.name is not None:
        cls = getattr(module, entry.name, None)
        if not inspect.isclass(cls):
            raise _EntryProblem(f"{entry.path}: module {entry.module!r} has no class {entry.name!r}")
        if not issubclass(cls, base):
            raise _EntryProblem(
                f"{entry.path}: {entry.module}.{entry.name} is not a {entry.kind} "
                f"(expected a subclass of {base.__module__}.{base.__qualname__})"
            )
        return cls
    candidates = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and issubclass(obj, base)
    ]
    if len(candidates) != 1:
        found = ", ".join(sorted(c.__name__ for c in candidates)) or "none"
        raise _EntryProblem(
            f"{entry.path}: 'name' is left out, so module {entry.module!r} must define exactly one "
            f"{entry.kind} class; found {len(candidates)} ({found})"
        )
    return candidates[0]


#: module kind -> the entry point a module of that kind must define itself
ENTRY_POINTS: dict[str, str] = {"transform": "transform", "publisher": "publish"}


def missing_declarations(
    kind: str, instance: Any, produces: Mapping[str, Any], consumes: Mapping[str, Any]
) -> list[str]:
    """What a module of ``kind`` lacks to take part in a channel (empty: nothing).

    A source must declare what it produces, a transform what it consumes and produces, a
    publisher what it consumes: without that the product graph cannot be checked and the
    module receives or delivers nothing, so the reference refuses such channels at start.
    The declarations are read from the instance (``EmptySource`` sets ``_produces`` in its
    ``__init__``).  A publisher (or transform) must also define ``publish`` (``transform``)
    in some class of its hierarchy below the framework's base: the reference's base
    ``publish()`` silently does nothing, ours raises, and either way a publisher that can
    never publish is a defect better stopped at start than after a run of failed generations.
    The logic engine declares through its facts and is not checked here.
    """
    needs = {"source": ("produces",), "transform": ("consumes", "produces"), "publisher": ("consumes",)}
    declared = {"produces": produces, "consumes": consumes}
    base_name = {"source": "Source", "transform": "Transform", "publisher": "Publisher"}
    missing = [
        f"declares no products it {what} (missing @{base_name[kind]}.{what}(name=type, ...))"
        for what in needs.get(kind, ())
        if not declared[what]
    ]
    method = ENTRY_POINTS.get(kind)
    if method is not None and not defines_below(type(instance), BASES[kind], method):
        missing.append(f"does not define {method}(self, data_block), so it can never {method}")
    return missing


def defines_below(cls: type, base: type, method: str) -> bool:
    """Does a class of ``cls``'s hierarchy other than ``base`` and its ancestors define ``method``?"""
    framework = set(base.__mro__)
    return any(method in vars(klass) for klass in cls.__mro__ if klass not in framework)


@dataclass
class _Built:
    """What validation learned about one entry."""

    entry: ModuleEntry
    spec: ModuleSpec
    instance: Any


def _build(
    entry: ModuleEntry, channel: str, problems: list[str], warnings: list[str], *, strict_parameters: bool = False
) -> _Built | None:
    try:
        cls = resolve_class(entry)
    except _EntryProblem as exc:
        problems.append(str(exc))
        return None
    checked = check_parameters(cls, entry.parameters, channel, strict=strict_parameters)
    warnings.extend(f"{entry.path}: {w}" for w in checked.warnings)
    if checked.problems:
        problems.extend(f"{entry.path}: {p}" for p in checked.problems)
        return None
    try:
        instance = cls(copy.deepcopy(checked.parameters))  # a module may edit its config: keep ours intact
    except Exception as exc:
        left_out = f" (parameters left out: {', '.join(checked.missing)})" if checked.missing else ""
        problems.append(
            f"{entry.path}: constructing {cls.__module__}.{cls.__name__} failed: {_exception_text(exc)}{left_out}"
        )
        return None
    if isinstance(instance, LogicEngine):
        warnings.extend(f"{entry.path}: {w}" for w in instance.config_warnings)
    try:
        produces = declared_products(instance, "_produces") if entry.kind != "publisher" else {}
        consumes = declared_products(instance, "_consumes") if entry.kind != "source" else {}
    except TypeError as exc:
        problems.append(f"{entry.path}: {exc}")
        return None
    missing = missing_declarations(entry.kind, instance, produces, consumes)
    if missing:
        problems.append(f"{entry.path} ({cls.__module__}.{cls.__name__}): " + "; ".join(missing))
        return None
    spec = ModuleSpec(
        key=entry.key,
        kind=entry.kind,
        module=entry.module,
        class_name=cls.__name__,
        cls=cls,
        parameters=FrozenDict(checked.parameters),
        produces=FrozenDict(produces),
        consumes=FrozenDict(consumes),
        schedule=entry.schedule if entry.kind == "source" else None,
        retries=entry.retries if entry.kind == "source" else 0,
        retry_interval=entry.retry_interval if entry.kind == "source" else 0,
    )
    return _Built(entry, spec, instance)


def _producers(built: list[_Built], problems: list[str]) -> dict[str, str]:
    producers: dict[str, list[str]] = {}
    for item in built:
        for product in item.spec.produces:
            producers.setdefault(product, []).append(item.entry.path)
    for product, paths in producers.items():
        if product in FRAMEWORK_PRODUCTS:
            problems.append(f"{', '.join(paths)} produces {product!r}, which the framework provides")
        elif len(paths) > 1:
            problems.append(f"product {product!r} is produced by {len(paths)} modules: {', '.join(paths)}")
    by_path = {item.entry.path: item.entry.key for item in built}
    return {product: by_path[paths[0]] for product, paths in producers.items()}


def _check_consumers(built: list[_Built], producers: Mapping[str, str], problems: list[str]) -> None:
    for item in built:
        if isinstance(item.instance, LogicEngine):
            for fact, missing in item.instance.unknown_products({*producers, *FRAMEWORK_PRODUCTS}).items():
                problems.extend(
                    f"{item.entry.path}: fact {fact!r} reads product {product!r}, which no module produces"
                    for product in missing
                )
            continue
        problems.extend(
            f"{item.entry.path} consumes product {product!r}, which no module of the channel produces"
            for product in item.spec.consumes
            if product not in producers and product not in FRAMEWORK_PRODUCTS
        )


def _order_transforms(transforms: list[_Built], producers: Mapping[str, str], problems: list[str]) -> list[_Built]:
    """Transforms in dependency order (file order among independent ones)."""
    by_key = {item.entry.key: item for item in transforms}
    position = {key: i for i, key in enumerate(by_key)}
    graph: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for key, item in by_key.items():
        graph.add(key, *(producers[p] for p in item.spec.consumes if producers.get(p) in by_key))
    try:
        graph.prepare()
    except graphlib.CycleError as exc:
        cycle: list[str] = exc.args[1]
        links = []
        # graphlib lists each node before the node depending on it: producer, then consumer
        for producer, consumer in itertools.pairwise(cycle):
            products = sorted(p for p in by_key[consumer].spec.consumes if producers.get(p) == producer)
            links.append(f"{consumer} consumes {', '.join(map(repr, products))} from {producer}")
        problems.append(f"transforms form a cycle {' -> '.join(cycle)}: " + "; ".join(links))
        return transforms
    order: list[_Built] = []
    while graph.is_active():
        ready = sorted(graph.get_ready(), key=position.__getitem__)
        order.extend(by_key[key] for key in ready)
        graph.done(*ready)
    return order


def _check_actions(engine: _Built | None, publishers: Mapping[str, Any], problems: list[str], warnings: list[str]):
    if engine is None:
        return
    rules = engine.instance.rule_set.rules.values()
    for rule in rules:
        for action in (*rule.actions, *rule.false_actions):
            if action not in publishers:
                available = ", ".join(publishers) or "none"
                problems.append(
                    f"{engine.entry.path}: rule {rule.name!r} fires action {action!r}, which is not a publisher "
                    f"of the channel (publishers: {available})"
                )
    never = sorted(set(publishers) - engine.instance.action_names)
    if never:
        warnings.append(f"{engine.entry.path}: no rule fires publisher(s) {', '.join(never)}: they will never run")


def validate_channel(config: ChannelConfig, *, strict_parameters: bool = False) -> ChannelPlan:
    """Validate a channel (see the module docstring); the plan, or :class:`ChannelValidationError`.

    ``strict_parameters`` is the global file's setting: a declared parameter without a
    default that the channel leaves out is then an error instead of a warning.
    """
    problems: list[str] = []
    warnings: list[str] = list(config.warnings)
    built = [
        _build(entry, config.name, problems, warnings, strict_parameters=strict_parameters)
        for entry in config.entries()
    ]
    if problems:
        raise ChannelValidationError(config.name, config.path, problems)
    items = [item for item in built if item is not None]
    producers = _producers(items, problems)
    _check_consumers(items, producers, problems)
    transforms = _order_transforms([i for i in items if i.entry.block == "transforms"], producers, problems)
    engines = [i for i in items if i.entry.block == "logicengines"]
    engine = engines[0] if engines else None
    publishers = {i.entry.key: i.spec for i in items if i.entry.block == "publishers"}
    _check_actions(engine, publishers, problems, warnings)
    if problems:
        raise ChannelValidationError(config.name, config.path, problems)
    logicengines_block = None if config.logicengines is None else dict(config.logicengines)
    return ChannelPlan(
        name=config.name,
        path=config.path,
        sources=FrozenDict({i.entry.key: i.spec for i in items if i.entry.block == "sources"}),
        transforms=tuple(item.spec for item in transforms),
        logic_engine=engine.spec if engine else None,
        publishers=FrozenDict(publishers),
        producers=FrozenDict(producers),
        publisher_policy=publisher_policy(
            {"logicengines": logicengines_block} if logicengines_block is not None else {}
        ),
        task_manager=FrozenDict(config.task_manager),
        warnings=tuple(warnings),
    )


def validate_source(entry: ModuleEntry, channel: str, *, strict_parameters: bool = False) -> ModuleSpec:
    """Validate one source entry on its own (a shared source's process): import, parameters,
    construction and declarations as for a channel's source; the spec, or
    :class:`ChannelValidationError` naming ``channel`` (the name the source runs under)."""
    problems: list[str] = []
    warnings: list[str] = []
    built = _build(entry, channel, problems, warnings, strict_parameters=strict_parameters)
    if built is None or problems:
        raise ChannelValidationError(channel, None, problems)
    return built.spec
