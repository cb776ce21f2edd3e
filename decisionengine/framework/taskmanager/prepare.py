"""A channel file made ready to run: validated plan and task-manager settings, in one step.

The channel process does this before it opens its DataSpace, and ``de-server --check``
does exactly the same, so that the check can never pass a channel the server would refuse
(or refuse one it would run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decisionengine.framework.config.channel_file import ChannelConfig
from decisionengine.framework.config.channels import strict_parameters
from decisionengine.framework.config.plan import ChannelPlan
from decisionengine.framework.config.validation import validate_channel
from decisionengine.framework.taskmanager.settings import TaskManagerSettings


def prepare_channel(
    config: ChannelConfig, global_config: Mapping[str, Any] | None
) -> tuple[ChannelPlan, TaskManagerSettings]:
    """Import the channel's modules, build each once, check its graph and its ``task_manager``
    block; raises (naming the file and key) if the channel cannot run.

    ``global_config`` decides whether a missing required parameter is a warning or an error
    (``strict_parameters``).
    """
    plan = validate_channel(config, strict_parameters=strict_parameters(global_config))
    settings = TaskManagerSettings.from_config(plan.task_manager, config.name, config.path)
    return plan, settings
