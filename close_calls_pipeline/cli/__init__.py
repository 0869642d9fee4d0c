"""The `close-calls` command line: run, erase, start-over, ui, docs, report, sandbox, bench
(see main.py)."""
