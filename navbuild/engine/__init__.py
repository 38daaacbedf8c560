"""The build engine: config, target graph, action keys, content-addressed store, sessions, doit glue.

Nothing here imports a framework at import time; rule families are found through the registry.
"""
