"""The `close-calls` command line as a user meets it.

* options: a bad value is refused by argparse in one line that names the option once;
* help texts and docstrings describe every command; the cli modules import no cycle;
* the project folder: everything a run writes goes there, and its own defs.yaml is used when it
  is a dg project with one; `dg launch` records into the instance `close-calls ui` opens when
  given it, as the help says;
* `close-calls ui` refuses a taken port at once and stops everything it started on SIGTERM;
* a failure is printed once, without the exception's class path;
* (slow) a wheel installed in a fresh venv runs `close-calls run` from an empty folder and writes
  only there.
"""

from __future__ import annotations

import ast
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.processes import gone, run_ok

import close_calls_pipeline
from close_calls_pipeline import cli
from close_calls_pipeline.cli.main import build_parser
from close_calls_pipeline.cli.project import dagster_home
from close_calls_pipeline.cli.ui import port_is_free
from close_calls_pipeline.core import config

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
COMMANDS = ("run", "erase", "start-over", "maintain", "ui", "docs", "report", "sandbox", "bench")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refused(capsys, *argv: str) -> str:
    """The error line argparse prints for `argv`, which it must refuse."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("run", "--sandbox-calls", "-5"),
        ("run", "--sandbox-calls", "0"),
        ("run", "--sandbox-calls", "many"),
        ("report", "--days", "0"),
        ("ui", "--port", "0"),
        ("ui", "--port", "70000"),
        ("docs", "--port", "x"),
        ("sandbox", "--calls", "0"),
        ("sandbox", "--max-skip", "-1"),
        ("sandbox", "--latency-ms", "-1"),
        ("sandbox", "--latency-ms", "nan"),
        ("sandbox", "--rps", "0"),
        ("sandbox", "--fault-rate", "1.5"),
    ],
)
def test_bad_numbers_are_refused_naming_the_option_once(capsys, argv):
    line = refused(capsys, *argv)
    option = argv[1]
    assert line.startswith(f"close-calls {argv[0]}: error: argument {option}: "), line
    assert line.count(option) == 1, line


def test_good_numbers_are_taken():
    args = build_parser().parse_args(
        ["sandbox", "--calls", "1", "--latency-ms", "0", "--rps", "0.5", "--fault-rate", "1"]
    )
    assert (args.calls, args.latency_ms, args.rps, args.fault_rate) == (1, 0.0, 0.5, 1.0)
    assert build_parser().parse_args(["run", "--sandbox-calls", "1"]).sandbox_calls == 1


@pytest.mark.parametrize("value", ["2999-01-01", "2024-13-01", "yesterday"])
def test_a_bad_backfill_start_names_the_option_once(capsys, value):
    line = refused(capsys, "run", "--backfill-start", value)
    assert line.startswith("close-calls run: error: argument --backfill-start: "), line
    assert line.count("backfill") == 1, line
    assert value in line


def test_run_help_names_only_options_run_has():
    done = run_ok([str(VENV_BIN / "close-calls"), "run", "--help"])
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", done.stdout))
    run = next(
        parser
        for action in build_parser()._actions
        if hasattr(action, "choices") and action.choices
        for name, parser in action.choices.items()
        if name == "run"
    )
    known = {option for action in run._actions for option in action.option_strings}
    assert options <= known, options - known  # e.g. no --calls or --frozen, which are sandbox's


def test_help_and_docstrings_describe_every_command():
    done = run_ok([str(VENV_BIN / "close-calls"), "--help"])
    description = done.stdout.split("positional arguments")[0]
    for name in COMMANDS:
        assert f"`{name}`" in description, name
        assert f"`{name}`" in close_calls_pipeline.__doc__ or name in close_calls_pipeline.__doc__
        assert name in cli.__doc__, name


def test_the_cli_modules_import_no_cycle():
    package = Path(cli.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        imports[path.stem] = {
            n.rsplit(".", 1)[1] for n in names if n.startswith("close_calls_pipeline.cli.")
        }

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for child in imports.get(start, ()):
            if child == target or (child not in seen and reaches(child, target, seen | {child})):
                return True
        return False

    cycles = [module for module in imports if reaches(module, module, {module})]
    assert not cycles, {m: imports[m] for m in cycles}


# --- the project folder -------------------------------------------------------------------------

PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{name}"
"""

OWN_DEFS_YAML = """\
type: close_calls_pipeline.CloseCallsComponent
attributes:
  duckdb_path: warehouse/own.duckdb
  sandbox_calls: 7
"""


def test_an_empty_folder_runs_the_packaged_component_and_keeps_its_files(tmp_path):
    from close_calls_pipeline.dagster_component.project import load_component

    settings = load_component(tmp_path).settings(tmp_path)
    package = Path(close_calls_pipeline.__file__).resolve().parent
    # no key: the sandbox's own file, never the live warehouse's
    assert settings.duckdb_path == tmp_path.resolve() / config.DEFAULT_SANDBOX_DUCKDB_RELATIVE_PATH
    assert settings.dbt_target_path.is_relative_to(tmp_path.resolve())
    assert not settings.dbt_target_path.is_relative_to(package)
    assert not settings.dbt_target_path.is_relative_to(config.DBT_PROJECT_DIR.resolve())


def test_a_dg_project_folder_runs_its_own_component(tmp_path):
    from close_calls_pipeline.dagster_component.project import load_component

    name = f"own_project_{os.getpid()}"
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.format(name=name))
    component = tmp_path / name / "defs" / "calls"
    component.mkdir(parents=True)
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "defs" / "__init__.py").write_text("")
    (component / "defs.yaml").write_text(OWN_DEFS_YAML)

    settings = load_component(tmp_path).settings(tmp_path)
    assert settings.duckdb_path == tmp_path.resolve() / "warehouse" / "own.duckdb"
    assert settings.sandbox_calls == 7


@pytest.mark.slow  # a real run or server in a subprocess
def test_dg_launch_records_into_the_instance_close_calls_ui_opens(tmp_path, monkeypatch):
    """The way `close-calls ui --help` gives: DAGSTER_HOME="$PWD/.dagster_home" dg launch."""
    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.instance.ref import InstanceRef

    env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSE_")}
    env["DAGSTER_HOME"] = str(tmp_path / config.DAGSTER_HOME_FOLDER)
    (tmp_path / config.DAGSTER_HOME_FOLDER).mkdir()
    command = [str(VENV_BIN / "dg"), "launch", "-m", "close_calls_pipeline.definitions"]
    run_ok([*command, "--assets", "close/users"], cwd=tmp_path, env=env, timeout=240)

    monkeypatch.delenv("DAGSTER_HOME")  # as `close-calls ui` finds it in a fresh shell
    home = dagster_home(tmp_path)
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        runs = instance.get_runs()
    assert [run.status for run in runs] == [DagsterRunStatus.SUCCESS]


# --- close-calls ui -----------------------------------------------------------------------------


@pytest.mark.slow  # a real run or server in a subprocess
def test_ui_refuses_a_taken_port_at_once(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [str(VENV_BIN / "close-calls"), "ui", "--project-dir", str(tmp_path), "--port",
             str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode != 0
    assert time.monotonic() - started < 20  # Python start-up, not dg's
    assert f"port {port}" in done.stderr and "--port" in done.stderr
    assert "Dagster UI on" not in done.stdout


def _session_members(session: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[3]) == session and not gone(int(stat.parent.name)):  # field 6: session
            members.append(int(stat.parent.name))
    return members


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in children.read_text().split()] if children.exists() else []


@pytest.mark.slow  # a real run or server in a subprocess
def test_ui_stops_everything_it_started_on_sigterm(tmp_path):
    port = free_port()
    ui = subprocess.Popen(
        [str(VENV_BIN / "close-calls"), "ui", "--project-dir", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, answered = time.monotonic() + 180, False
        while time.monotonic() < deadline and not answered and ui.poll() is None:
            time.sleep(2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    answered = True
            except OSError:
                continue
        assert answered, "the UI did not answer"
        (dg_dev,) = _children(ui.pid)
        assert len(_session_members(dg_dev)) >= 3  # dg dev, the webserver, the daemon, ...

        ui.send_signal(signal.SIGTERM)
        output, _ = ui.communicate(timeout=60)
        assert _session_members(dg_dev) == [], output[-3000:]
        assert port_is_free(port)
        assert "virtual environment does not match" not in output
        assert "BetaWarning" not in output
    finally:
        if ui.poll() is None:
            ui.kill()


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.slow  # a real run or server in a subprocess
def test_a_failure_is_printed_once_without_a_class_path(make_sandbox, tmp_path, monkeypatch):
    from close_calls_pipeline.cli.run import run_pipeline

    sandbox = make_sandbox(calls=20, seed=5)
    monkeypatch.setenv("CLOSE_API_KEY", "not-the-key")
    monkeypatch.setenv("CLOSE_API_BASE_URL", sandbox.base_url)
    monkeypatch.delenv(config.CLOSE_CALLS_DUCKDB_ENV, raising=False)
    out = io.StringIO()
    assert run_pipeline(project_dir=tmp_path, out=out) == 1
    text = out.getvalue()
    # The key is checked before any step (the organization check asks GET /me/), so the run
    # fails as a whole: the error is one line, shown once, with no class path in front.
    lines = [line for line in text.splitlines() if "rejected the credentials" in line]
    assert len(lines) == 1, text
    assert not re.search(r"[\w.]+Error: ", lines[0]), lines[0]
    assert "close_calls_pipeline.core" not in text
    assert "not-the-key" not in text


# --- an installed wheel -------------------------------------------------------------------------


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.slow
def test_an_installed_wheel_runs_from_an_empty_folder_and_writes_only_there(tmp_path):
    """The wheel, installed non-editable in a fresh venv whose dependencies are this venv's (a
    .pth file: the same packages, without a second download), runs from an empty folder."""
    wheels, venv, project = tmp_path / "wheels", tmp_path / "venv", tmp_path / "project"
    project.mkdir()
    run_ok([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
            str(REPO_ROOT)], timeout=300)  # fmt: skip
    (wheel,) = wheels.glob("close_calls_pipeline-*.whl")
    run_ok([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    (site_packages,) = venv.glob("lib/python3.*/site-packages")
    dependencies = next(p for p in map(Path, sys.path) if p.name == "site-packages")
    (site_packages / "dependencies.pth").write_text(f"{dependencies}\n")
    run_ok([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
            "-q", "--no-deps", str(wheel)], timeout=300)  # fmt: skip
    python = str(venv / "bin" / "python")
    located = run_ok(
        [python, "-c", "import close_calls_pipeline as p; print(p.__file__)"], cwd=project
    )
    assert Path(located.stdout.strip()).is_relative_to(site_packages)

    before = _files(venv)
    env = {
        "PATH": f"/usr/local/bin:/usr/bin:/bin:{VENV_BIN}",  # dbt's own script, last
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    done = run_ok([str(venv / "bin" / "close-calls"), "run", "--sandbox-calls", "20"],
                  cwd=project, env=env, timeout=600)  # fmt: skip
    # no key: the sandbox's own files
    assert f"DuckDB file: {project / 'data' / 'sandbox.duckdb'}" in done.stdout
    assert (project / "data" / "sandbox.duckdb").is_file()
    assert (project / "data" / "sandbox_call_report.html").is_file()
    assert (project / config.DAGSTER_HOME_FOLDER / "history" / "runs.db").is_file()
    assert (config.dbt_target_path(project) / "manifest.json").is_file()
    after = _files(venv)
    changed = {name for name, stat in after.items() if before.get(name) != stat}
    assert not changed, sorted(changed)[:20]
