"""The project folder and the `CloseCallsComponent` it runs.

A project folder is where the product writes: the warehouse (`data/`), the Dagster instance
(`.dagster_home/`) and dbt's artefacts (`core/config.py` names them). `close-calls` takes the
folder it runs in (or `--project-dir`). When that folder is a `dg` project whose defs hold a
`CloseCallsComponent`, that component is the one; otherwise it is the package's own
`defs/close_calls/defs.yaml`, with the folder as its root. Nothing is written under the install.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import yaml
from dagster.components.core.component_tree import ComponentTree

from close_calls_pipeline.dagster_component.component import CloseCallsComponent

# How a defs.yaml may name the component.
COMPONENT_TYPES = frozenset(
    {
        "close_calls_pipeline.CloseCallsComponent",
        f"{CloseCallsComponent.__module__}.{CloseCallsComponent.__name__}",
    }
)
PACKAGED_DEFS_MODULE = "close_calls_pipeline.defs"
PACKAGED_COMPONENT = "close_calls"  # its folder in the packaged defs


def is_dg_project(folder: Path) -> bool:
    """A `dg` project root: a dg.toml, or a pyproject.toml with a [tool.dg] table."""
    if (folder / "dg.toml").is_file():
        return True
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return False
    with pyproject.open("rb") as file:
        return "dg" in tomllib.load(file).get("tool", {})


def _component_folders(defs_root: Path) -> list[str]:
    """The folders (relative to the defs root) whose defs.yaml declares a CloseCallsComponent."""
    found = []
    for defs_yaml in sorted(defs_root.rglob("defs.yaml")):
        try:
            documents = list(yaml.safe_load_all(defs_yaml.read_text()))
        except yaml.YAMLError:
            continue  # not ours to judge: dg reports it when it loads the project
        if any(isinstance(d, dict) and d.get("type") in COMPONENT_TYPES for d in documents):
            found.append(str(defs_yaml.parent.relative_to(defs_root)))
    return found


def packaged_tree(project_dir: Path) -> ComponentTree:
    """The package's own defs folder, rooted at `project_dir`."""
    defs_module = importlib.import_module(PACKAGED_DEFS_MODULE)
    return ComponentTree.from_module(defs_module, project_root=project_dir.resolve())


def component_tree(project_dir: Path) -> tuple[ComponentTree, str]:
    """The component tree that holds the project's `CloseCallsComponent`, and its folder."""
    project_dir = project_dir.resolve()
    if is_dg_project(project_dir):
        if str(project_dir) not in sys.path:  # as `dg` does: the project's root module imports
            sys.path.insert(0, str(project_dir))
        tree = ComponentTree.for_project(project_dir)
        folders = _component_folders(tree.defs_module_path)
        if folders:
            return tree, folders[0]
    return packaged_tree(project_dir), PACKAGED_COMPONENT


def load_component(project_dir: Path) -> CloseCallsComponent:
    """The project's `CloseCallsComponent` (the same environment templates decide the key, base
    URL and warehouse as for `dg` and the UI)."""
    tree, folder = component_tree(project_dir)
    return tree.load_component(folder, CloseCallsComponent)
