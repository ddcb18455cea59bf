"""Drive JupyterLab 4 and Notebook 7 in Debian's headless Chromium.

Fixtures: ``jupyter`` (one server per front end, parametrised over both) and ``driver`` (a
``NotebookDriver`` on pytest-playwright's ``page``, launched with Debian's chromium): write or
copy a notebook into the server, run all its cells without awaiting them, wait for the marker
cell, read chart lines, take screenshots. The facts behind the flags are in docs/performance.md.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import ConsoleMessage, Error, Locator, Page

REPO = Path(__file__).resolve().parents[2]
DONE_MARKER = "gw-notebook-done"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Notebook 7.6 logs this page error on every load, and yjs warns about its documents.
ALLOWED_CONSOLE = (re.compile(r"reading 'schema'"), re.compile(r"yjs|Yjs"))
CELL_ERROR = re.compile(r"Traceback|\b\w+(Error|Exception)\b")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
# The notebook at `path` is in front, and its kernel is connected and idle.
KERNEL_READY = """(path) => {
    const widget = window.jupyterapp?.shell?.currentWidget;
    const kernel = widget?.sessionContext?.session?.kernel;
    return widget?.context?.path === path
        && kernel?.connectionStatus === "connected" && kernel?.status === "idle";
}"""
NOTIFICATION_SETTINGS = "@jupyterlab/apputils-extension/notification.jupyterlab-settings"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Launch Debian's chromium: Playwright cannot download its own browser here."""
    executable = shutil.which("chromium")
    if executable is None:
        reason = "the browser tests need Debian's package `chromium` (apt-get install chromium)"
        # CI must never pass by skipping the only end-to-end check of the panel.
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return {**browser_type_launch_args, "executable_path": executable, "args": CHROMIUM_ARGS}


@pytest.fixture
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1800}}


@dataclass(frozen=True)
class JupyterServer:
    """A running ``jupyter lab`` or ``jupyter notebook`` serving ``root``."""

    app: str
    base_url: str
    token: str
    root: Path
    log: Path

    def url(self, notebook: str) -> str:
        """Address of ``notebook`` (relative to ``root``) in this front end."""
        # `reset`: Lab would otherwise reopen the notebooks of earlier tests from its workspace.
        route = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.base_url}{route}/{notebook}?reset&token={self.token}"

    def shut_down_kernels(self) -> None:
        """End every session, so no training thread of one test slows the next."""
        for session in self._api("GET", "api/sessions"):
            self._api("DELETE", f"api/sessions/{session['id']}")

    def _api(self, method: str, path: str) -> list[dict]:
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else []

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log, for failure messages."""
        return self.log.read_text(errors="replace")[-chars:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fresh_jupyter_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    dirs = {
        name: home / name.lower()
        for name in (
            "JUPYTER_CONFIG_DIR",
            "JUPYTER_RUNTIME_DIR",
            "JUPYTERLAB_SETTINGS_DIR",
            "JUPYTERLAB_WORKSPACES_DIR",
            "IPYTHONDIR",
        )
    }
    for path in dirs.values():
        path.mkdir(parents=True)
    # Without this the "get notified about news?" toast can cover the panel.
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"] / NOTIFICATION_SETTINGS
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, **{name: str(path) for name, path in dirs.items()}}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _server_command(app: str, port: int, token: str, root: Path) -> list[str]:
    command = [sys.executable, "-m", "jupyterlab" if app == "lab" else "notebook"]
    command += [
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--expose-app-in-browser",
    ]
    if app == "lab":
        command.append("--LabApp.news_url=None")
    if os.geteuid() == 0:  # CI runs as root, and Jupyter refuses root without this flag.
        command.append("--allow-root")
    return command


def _wait_until_ready(process: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"jupyter not ready after {timeout} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    # SIGTERM lets the server shut down the kernels it started; kill only if it hangs.
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session", params=["lab", "notebook"])
def jupyter(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """A Jupyter server (JupyterLab 4, then Notebook 7) whose kernels see ``GW_STEPS``."""
    app = request.param
    home = tmp_path_factory.mktemp(f"jupyter-{app}")
    root = home / "root"
    root.mkdir()
    env = _fresh_jupyter_env(home, {"GW_STEPS": os.environ.get("GW_BROWSER_STEPS", "120")})
    port, token = _free_port(), secrets.token_hex(16)
    log = home / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            _server_command(app, port, token, root),
            env=env,
            cwd=root,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_ready(process, f"{base_url}api/status?token={token}", log, timeout=60)
        yield JupyterServer(app, base_url, token, root, log)
    finally:
        _stop(process)


@dataclass
class ConsoleLog:
    """Errors the page logged: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def record_message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def record_exception(self, error: Error) -> None:
        self.errors.append(f"{error.name}: {error.message}")

    def unexpected(self) -> list[str]:
        """Errors other than the known harmless ones of Notebook 7."""
        return [e for e in self.errors if not any(p.search(e) for p in ALLOWED_CONSOLE)]


@dataclass
class NotebookDriver:
    """One page of one front end: write or copy a notebook, run it, read charts, screenshot."""

    page: Page
    server: JupyterServer
    console: ConsoleLog

    def write(self, name: str, sources: list[str]) -> str:
        """Write code cells ``sources`` plus the marker cell into the server's root."""
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
        notebook.metadata["kernelspec"] = KERNELSPEC
        return self._save(notebook, name)

    def copy(self, source: Path) -> str:
        """Copy a repository notebook into the server's root, with the marker cell appended."""
        return self._save(nbformat.read(source, as_version=4), source.name)

    def _save(self, notebook: nbformat.NotebookNode, name: str) -> str:
        notebook.cells.append(nbformat.v4.new_code_cell(f"print({DONE_MARKER!r})"))
        nbformat.write(notebook, self.server.root / name)
        return name

    def run_all(self, name: str) -> None:
        """Open ``name``, wait for an idle kernel, and start Run All without awaiting it."""
        self.page.goto(self.server.url(name))
        # The idle indicator shows before the kernel even exists; ask the session itself.
        self.page.wait_for_function(KERNEL_READY, arg=name, timeout=60_000)
        self.page.evaluate(
            "() => { jupyterapp.commands.execute('notebook:run-all-cells'); return true; }"
        )

    def wait_for_marker(self, timeout_s: float = 120) -> None:
        """Wait for the marker cell's output; fail at once with the text of a cell error."""
        done = self.page.locator(".jp-OutputArea-output", has_text=DONE_MARKER)
        # Cell errors render as stderr; warnings do too, so look for the error's own words.
        stderr = self.page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # The marker first, the errors after. The marker cell can still run after an
            # error (seen once on a fresh CI machine: ipykernel aborts only what is already
            # queued, and a slow browser may send the marker's request later); an error's
            # output reaches the page before any later cell's, so it is never missed.
            finished = done.count() > 0
            failed = [text for text in stderr.all_inner_texts() if CELL_ERROR.search(text)]
            if failed:
                pytest.fail(f"a cell failed in {self.server.app}:\n{failed[0]}")
            if finished:
                return
            self.page.wait_for_timeout(250)
        pytest.fail(f"the notebook did not finish in {timeout_s} s\n{self.server.log_tail()}")

    def line_paths(self, chart: Locator) -> list[str]:
        """The ``d`` of every data line of the bqplot figure ``chart`` (not its legend)."""
        lines = chart.locator("g.curve path.line")
        return [lines.nth(i).get_attribute("d") or "" for i in range(lines.count())]

    def wait_for_lines(self, chart: Locator, timeout_s: float = 60) -> list[str]:
        """Wait until ``chart`` draws at least one non-empty line; return the paths."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            paths = self.line_paths(chart)
            if any(len(d) > 10 for d in paths):
                return paths
            self.page.wait_for_timeout(200)
        pytest.fail(f"no line drawn in {chart} within {timeout_s} s ({self.server.app})")

    def wait_for_change(self, chart: Locator, before: list[str], timeout_s: float = 15) -> bool:
        """Whether the lines of ``chart`` differ from ``before`` within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.line_paths(chart) != before:
                return True
            self.page.wait_for_timeout(200)
        return False

    def wait_for_standstill(
        self, chart: Locator, quiet_s: float = 2.0, timeout_s: float = 20
    ) -> bool:
        """Whether the lines of ``chart`` stay unchanged for ``quiet_s`` within ``timeout_s``.

        Updates already in flight when training stops still arrive, so one still frame is not
        enough: the lines must hold still for a while.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before = self.line_paths(chart)
            self.page.wait_for_timeout(quiet_s * 1000)
            if self.line_paths(chart) == before:
                return True
        return False

    def screenshot(self, name: str, element: Locator) -> Path:
        """Save a screenshot of ``element`` as ``<app>-<name>.png`` under ``screenshot_dir()``."""
        path = screenshot_dir() / f"{self.server.app}-{name}.png"
        element.scroll_into_view_if_needed()
        element.screenshot(path=path)
        return path


def screenshot_dir() -> Path:
    """``$GW_SCREENSHOT_DIR``, else ``artifacts/screenshots`` (git-ignored)."""
    folder = Path(os.environ.get("GW_SCREENSHOT_DIR", REPO / "artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def repo_notebooks() -> Path:
    """The repository's notebooks/ folder."""
    return REPO / "notebooks"


@pytest.fixture
def driver(page: Page, jupyter: JupyterServer) -> Iterator[NotebookDriver]:
    """A driver for ``page`` on ``jupyter``; errors are recorded from before the first load."""
    console = ConsoleLog()
    page.on("console", console.record_message)
    page.on("pageerror", console.record_exception)
    yield NotebookDriver(page, jupyter, console)
    page.close()
    jupyter.shut_down_kernels()
