"""Small helpers shared by the framework: metrics and immutable containers.

Nothing here imports the rest of the framework, so any layer may use it.
"""
