"""This repository's dg defs folder: one `CloseCallsComponent` (close_calls/defs.yaml)."""
