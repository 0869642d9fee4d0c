"""The `close-calls` command line: run, ui, docs, report, sandbox, bench (see main.py)."""
