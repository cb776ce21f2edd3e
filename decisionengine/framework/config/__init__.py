"""Configuration: where the files are, how they are read, and what they must contain.

* :mod:`.policies` -- file names, directories and the environment variables that move them;
* :mod:`.ValidConfig` -- a read-only mapping over an evaluated jsonnet file;
* :mod:`.global_config` -- the schema of ``decision_engine.jsonnet`` (defaults, warnings);
* :mod:`.channel_file` -- the structure of one channel file;
* :mod:`.validation` -- imports, parameters and the product graph of a channel, giving a
  :class:`~.plan.ChannelPlan`;
* :mod:`.channels` -- every channel of a ``config.d/`` directory, good and bad.

This package never imports the task manager or the engine.
"""
