"""The alignment inspector in a real browser: JupyterLab on loopback, notebook 06 in headless Chromium.

Chromium is Debian's ``/usr/bin/chromium`` (``make browser`` installs it), driven by Playwright's
Python API; Playwright's own browser download is never used. If the browser or the server cannot
start, the test fails and says why. The screenshot goes to ``runs/browser/inspector.png``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from ptacl_lib.notebook_runner import NOTEBOOKS_DIR
from ptacl_lib.train import TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = "06_alignment_inspector.ipynb"
SCREENSHOT = REPO / "runs" / "browser" / "inspector.png"
FAILURE_SCREENSHOT = SCREENSHOT.with_name("failure.png")  # the page as it was when a check failed
SERVER_START_S = 60
NOTEBOOK_RUN_MS = 90_000  # all cells, kernel start included
UI_MS = 30_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_notebook(root: Path, manifest: Path, runs: Path) -> Path:
    """A copy of notebook 06 with tiny parameters injected (papermill, not executed)."""
    import papermill as pm

    target = root / NOTEBOOK
    pm.execute_notebook(str(NOTEBOOKS_DIR / NOTEBOOK), str(target), prepare_only=True, kernel_name="python3",
                        progress_bar=False,
                        parameters={"manifest": str(manifest), "run_dir": str(runs / "seed0"),
                                    "compare_run_dir": str(runs / "seed1"), "subjects": 1, "phases": [0],
                                    "figures_dir": str(runs / "figures"), "device": "cpu"})
    return target


#: JupyterLab user settings: no news poll, no update check, and the notebook's kernel starts without a dialog.
LAB_SETTINGS: dict[str, dict[str, object]] = {
    "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "notebook-extension/tracker": {"autoStartDefaultKernel": True},
}


def quiet_lab_settings(settings: Path) -> None:
    """Write ``LAB_SETTINGS`` into a fresh settings directory: nothing on screen but the notebook."""
    for name, values in LAB_SETTINGS.items():
        path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of notebook 06 (tiny parameters) in a JupyterLab on 127.0.0.1 with a random port and token."""
    base = tmp_path_factory.mktemp("browser")
    runs = base / "runs"
    for seed in (0, 1):  # two randomly initialised runs (no training: the browser is under test, not the model)
        fit(TrainConfig(manifest=str(tiny_cohort), run_dir=str(runs / f"seed{seed}"), objective="none", epochs=0,
                        seed=seed, progress=False))
    root = base / "lab"
    root.mkdir()
    prepare_notebook(root, tiny_cohort, runs)
    quiet_lab_settings(base / "settings")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    log = open(base / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        wait_for_server(server, f"http://127.0.0.1:{port}/api/status?token={token}", base / "jupyterlab.log")
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def wait_for_server(server: subprocess.Popen, status_url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(status_url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


IMAGE_BYTES_JS = """async (img) => {
    const buffer = await (await fetch(img.src)).arrayBuffer();
    let text = ""; for (const b of new Uint8Array(buffer)) text += String.fromCharCode(b);
    return btoa(text);
}"""


@pytest.mark.slow
def test_inspector_renders_and_follows_the_slider(lab: str, tmp_path: Path) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (`make browser`)")
    with sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1100})
        except PlaywrightError as err:
            pytest.fail(f"headless Chromium ({CHROMIUM}) could not start: {err}")
        try:
            page = context.new_page()
            page.set_default_timeout(UI_MS)
            page.goto(lab)
            page.wait_for_selector(".jp-Notebook .jp-Cell", state="visible")
            select_kernel = page.locator(".jp-Dialog").get_by_role("button", name="Select")
            page.wait_for_function(  # the kernel is up (or JupyterLab asks which one to start)
                "() => document.querySelector('.jp-Dialog') !== null"
                " || [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e => e.innerText.includes('Idle'))",
                timeout=NOTEBOOK_RUN_MS)
            if select_kernel.count():
                select_kernel.click()
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=False).first.click()

            app = page.locator(".ptacl-inspector")
            image = app.locator("img")
            image.wait_for(state="visible", timeout=NOTEBOOK_RUN_MS)
            for control in (".widget-dropdown select", ".widget-slider", ".widget-play button"):
                assert app.locator(control).count() > 0, f"inspector control {control} did not render"
            assert app.locator(".widget-dropdown select").count() >= 3  # filter, subject, lead
            page.wait_for_function("img => img.complete && img.naturalWidth > 200", arg=image.element_handle())
            phase = app.locator(".widget-slider", has=page.locator("label", has_text="phase"))
            assert phase.locator(".widget-readout").inner_text().strip() == "0"
            before = image.evaluate(IMAGE_BYTES_JS)
            src_before = image.get_attribute("src")

            phase.locator(".noUi-handle").focus()
            for _ in range(5):
                page.keyboard.press("ArrowRight")
            page.wait_for_function("([el, old]) => el.getAttribute('src') !== old && el.complete",
                                   arg=[image.element_handle(), src_before])
            page.wait_for_function("el => el.innerText.trim() === '5'",
                                   arg=phase.locator(".widget-readout").element_handle())
            wait_until_shown(page, "5")
            after = image.evaluate(IMAGE_BYTES_JS)
            assert base64.b64decode(after)[:8] == b"\x89PNG\r\n\x1a\n"
            assert after != before, "moving the phase slider did not change the rendered frame"

            play = app.locator(".widget-play button").first  # play/pause toggle, linked to the slider
            play.click()
            page.wait_for_function("el => el.innerText.trim() !== '5'",
                                   arg=phase.locator(".widget-readout").element_handle())
            play.click()
            wait_until_shown(page, phase.locator(".widget-readout").inner_text().strip())

            page.wait_for_function(  # every code cell has run: no "[*]" prompt left, and the scores table is there
                "() => ![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.innerText.includes('*'))"
                " && document.querySelectorAll('.jp-RenderedHTMLCommon table').length >= 2",
                timeout=NOTEBOOK_RUN_MS)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            app.scroll_into_view_if_needed()
            app.screenshot(path=str(SCREENSHOT))
        except Exception:
            FAILURE_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(FAILURE_SCREENSHOT), full_page=True)
            raise
        finally:
            context.close()
    assert SCREENSHOT.stat().st_size > 10_000


def wait_until_shown(page: Page, phase: str) -> None:
    """The app's caption names the phase of the picture it last sent (the image is sent just before it)."""
    page.wait_for_function("phase => (document.querySelector('.ptacl-inspector .ptacl-shown')?.innerText ?? '')"
                           ".trim().endsWith('phase ' + phase)", arg=phase)
