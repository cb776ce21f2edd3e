"""Imported first by the channel fork server: it dies with de-server (see :mod:`.supervision`).

A module, not a call, because the fork server runs nothing of ours but the imports of its
preload list.  Importing it anywhere else does nothing: only a fork server started by
:func:`.supervision.ensure_fork_server` finds its expected parent in the environment.
"""

from decisionengine.framework.engine import supervision

supervision.guard_fork_server()
