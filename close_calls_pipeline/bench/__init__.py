"""Benchmarks (`close-calls bench`, the sandbox and decode benches): outside the product's import graph."""
