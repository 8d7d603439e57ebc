"""Backends of ntgraph: one package per target, each importing its heavy dependency itself."""
