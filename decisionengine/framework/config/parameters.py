"""The parameter policy: module parameters checked against ``supports_config``.

* a declared parameter without a default that the channel file leaves out: **warning**
  naming the channel, the module and the parameter, and the module is built without it
  (the reference does the same: modules read such parameters with ``config.get`` and
  channels combined from fragments often leave one out); with ``strict_parameters: true``
  in the global file it is an **error**, for sites that prefer to stop such channels;
* a declared default that had to be converted to the declared type (see
  :class:`~decisionengine.framework.modules.parameter.Parameter`): **warning**;
* a value that does not fit the declared type: **error** (an integer is accepted where a
  float is declared; a boolean is never taken for a number);
* a parameter the class does not declare: **warning** -- many existing modules read
  parameters they never declared, so refusing them would break working channels;
* a class that declares no parameters at all is not checked;
* ``channel_name`` is set by the framework: a value in the file is replaced (warning);
* declared defaults are filled in for parameters the file leaves out, so a module sees
  the same values ``--config-template`` and ``--describe`` advertise.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from decisionengine.framework.config.schema import show
from decisionengine.framework.modules.decorators import supported_parameters
from decisionengine.framework.modules.parameter import matches_type, type_name

CHANNEL_NAME = "channel_name"


@dataclass
class ParameterCheck:
    """The complete parameters for a module instance, and what the check found."""

    parameters: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: required parameters left out (a warning unless strict): named again if construction fails
    missing: list[str] = field(default_factory=list)


def check_parameters(
    cls: type, parameters: Mapping[str, Any], channel_name: str, *, strict: bool = False
) -> ParameterCheck:
    """Apply the policy for ``cls`` to ``parameters``; messages start with the parameter name.

    ``strict`` (the global ``strict_parameters``) turns a missing required parameter from a
    warning into a problem.
    """
    declared = supported_parameters(cls)
    result = ParameterCheck(dict(parameters))
    for parameter in declared.values():
        result.warnings.extend(f"{note} (declared by {cls.__name__})" for note in getattr(parameter, "notes", ()))
    if CHANNEL_NAME in parameters and parameters[CHANNEL_NAME] != channel_name:
        result.warnings.append(
            f"parameter {CHANNEL_NAME!r} is set by the framework to {channel_name!r}; "
            f"the value {parameters[CHANNEL_NAME]!r} is ignored"
        )
    if declared:
        for name, parameter in declared.items():
            if name == CHANNEL_NAME:
                continue
            if name not in parameters:
                if parameter.required and strict:
                    result.problems.append(
                        f"parameter {name!r} is required by {cls.__name__} ({type_name(parameter.type)}) "
                        "(strict_parameters is set)"
                    )
                elif parameter.required:
                    result.missing.append(name)
                    result.warnings.append(
                        f"parameter {name!r} ({type_name(parameter.type)}) of {cls.__name__} has no default and "
                        f"is not set in channel {channel_name!r}: the module is built without it"
                    )
                else:
                    result.parameters[name] = copy.deepcopy(parameter.default)
            elif not matches_type(parameters[name], parameter.type):
                result.problems.append(
                    f"parameter {name!r}: expected {type_name(parameter.type)}, got {show(parameters[name])} "
                    f"({type(parameters[name]).__name__})"
                )
        for name in parameters:
            if name not in declared and name != CHANNEL_NAME:
                result.warnings.append(f"parameter {name!r} is not declared by {cls.__name__} (passed on unchecked)")
    result.parameters[CHANNEL_NAME] = channel_name
    return result
