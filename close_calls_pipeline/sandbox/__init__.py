"""A local, deterministic Close API ("the sandbox") served over real HTTP on loopback.

from close_calls_pipeline.sandbox import SandboxStore, SandboxServer, start_sandbox
"""

from close_calls_pipeline.sandbox.server import SandboxServer, serve, start_sandbox
from close_calls_pipeline.sandbox.store import UNSET, SandboxStore

__all__ = ["UNSET", "SandboxServer", "SandboxStore", "serve", "start_sandbox"]
