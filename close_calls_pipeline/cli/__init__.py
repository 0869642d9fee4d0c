"""The `close-calls` command line: run, sandbox, bench."""
