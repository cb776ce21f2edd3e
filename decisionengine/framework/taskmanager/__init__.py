"""One channel's lifecycle: modules, schedules, generations (see :mod:`.TaskManager`)."""
