"""The `close-calls` command line: run, erase, start-over, maintain, ui, docs, report, sandbox,
bench (see main.py)."""
