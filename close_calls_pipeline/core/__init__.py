"""The orchestrator-free core: Close API client, sandbox Close API, typing, warehouse, sync.

Nothing here imports Dagster or the command line; both sit on top of it.
"""
