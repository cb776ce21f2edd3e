"""Small helpers shared by the framework: metrics and immutable containers.

Also the framework's loggers (:mod:`.logger`).  Nothing here imports the rest of the
framework, so any layer may use it.
"""
