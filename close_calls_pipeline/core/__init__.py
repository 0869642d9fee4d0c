"""The orchestrator-free core: Close API client, typing, warehouse, sync, locks, publish.

Nothing here imports Dagster, the command line, the sandbox or the benchmarks; they sit on top
of it.
"""
