"""In a real browser: headless Chromium (Debian's ``chromium``), driven by Playwright.

1. ``wanlab.show``'s player, as a standalone page: play and the slider move one frame index shared by
   every video.
2. JupyterLab on 127.0.0.1 with a token: open ``notebooks/01_quickstart.ipynb``, run all cells, check
   that the FrameViewer rendered (slider and image visible), move its slider and check that the frame
   shown changed, check that the ``wanlab.show`` player runs inside JupyterLab, and save screenshots
   under ``test-output/browser/``.

Skipped, with the reason, where Chromium, Playwright or JupyterLab is missing; CI installs them
(``scripts/ci-browser-deps.sh``). Playwright never downloads a browser here: it launches the system
Chromium (``WANLAB_CHROMIUM`` overrides ``/usr/bin/chromium``) with the flags a closed network needs.
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
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output" / "browser"
CHROMIUM = os.environ.get("WANLAB_CHROMIUM", "/usr/bin/chromium")
#: Without the networking flags Chromium keeps dialling Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.slow


def _requirements() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (install Debian's chromium: scripts/ci-browser-deps.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (the Python package) is not installed (scripts/ci-browser-deps.sh)"
    return None


@pytest.fixture(scope="module")
def browser_context():
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="wanlab-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000}, service_workers="block",
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def moving_square(t: int, offset: int = 0):
    from wanlab.video import Video

    frames = np.zeros((t, 32, 32, 3), np.uint8)
    for i in range(t):
        frames[i, ..., 2] = i * 9
        frames[i, 8:16, (i + offset) % 24:(i + offset) % 24 + 8] = 255
    return Video(frames, fps=16.0)


def shown_frames(page, root: str = ".wanlab-show") -> list[int]:
    frames = page.eval_on_selector_all(f"{root} img.wanlab-frame", "els => els.map(e => e.dataset.frame)")
    return [int(x) for x in frames]


# ------------------------------------------------------------------------------------ wanlab.show
def test_show_player_plays_all_videos_in_step(browser_context, tmp_path):
    import wanlab

    player = wanlab.show({"a": moving_square(17), "b": moving_square(17, offset=5), "short": moving_square(5)})
    page_path = player.save(tmp_path / "player.html")
    page = browser_context.new_page()
    try:
        page.goto(page_path.as_uri())
        page.wait_for_selector(".wanlab-show[data-wanlab-ready]")
        assert shown_frames(page) == [0, 0, 0]
        page.click(".wanlab-play")
        page.wait_for_function("Number(document.querySelector('.wanlab-show').dataset.frame) >= 3", timeout=5000)
        page.click(".wanlab-play")  # pause
        frame = int(page.get_attribute(".wanlab-show", "data-frame"))
        assert shown_frames(page) == [frame, frame, min(frame, 4)]  # one index for all; short one holds
        assert page.inner_text(".wanlab-label").startswith(f"frame {frame} / 16")

        page.eval_on_selector(".wanlab-slider", "s => { s.value = '12'; s.dispatchEvent(new Event('input')); }")
        assert shown_frames(page) == [12, 12, 4]
        assert page.inner_text(".wanlab-label") == "frame 12 / 16 · t = 0.75 s"
        page.click(".wanlab-videos img >> nth=0")
        page.keyboard.press("ArrowRight")  # keyboard stepping on the player
        assert shown_frames(page) == [13, 13, 4]
        OUTPUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUTPUT / "show-player.png"))
    finally:
        page.close()


# ------------------------------------------------------------------------------------- the report
def test_a_wide_sweep_report_fits_1280_px_without_a_sideways_scroll(browser_context, pipe, tmp_path):
    """Many swept fields and every metric: the table scrolls inside its own box, the page never does."""
    from wanlab import Sweep
    from wanlab.report import write_sweep_report

    sweep = Sweep(base={"prompt": "a red fox running through fresh snow", "width": 32, "height": 32,
                        "num_frames": 5, "steps": 2},
                  grid={"seed": [1, 2], "guidance_scale": [3.0, 5.0], "flow_shift": [3.0, 5.0],
                        "negative_prompt": ["", "blurry, static, low quality, overexposed"]}, name="wide")
    result = sweep.run(pipe, tmp_path / "runs", progress=False)
    report = write_sweep_report(result, tmp_path / "report")
    page = browser_context.new_page()
    try:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(report.as_uri())
        page.wait_for_selector("table.metrics")
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
                               " document.querySelector('.scroll').scrollWidth,"
                               " document.querySelector('.scroll').clientWidth]")
        page_scroll, page_width, table_scroll, box_width = widths
        assert page_scroll <= page_width, f"the page scrolls sideways: {page_scroll} px wide in a {page_width} px window"
        assert box_width <= page_width and table_scroll >= box_width
        assert page.locator("video").count() == 16 and page.locator("img.plot").count() >= 2
        OUTPUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUTPUT / "report-1280.png"), full_page=True)
    finally:
        page.close()


# ------------------------------------------------------------------------------------- JupyterLab
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def jupyter_lab(tmp_path):
    """JupyterLab serving a copy of notebooks/, with its own config/data/runtime folders and a
    ``python3`` kernel that runs this interpreter. Yields (base url, token)."""
    if _requirements():
        pytest.skip(_requirements())
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    root = tmp_path / "root"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints"))
    home = tmp_path / "jupyter"
    spec = home / "path" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
    }))
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                          "checkForUpdates": False}))
    tracker = settings.parent / "notebook-extension"
    tracker.mkdir()  # start the notebook's kernel without asking
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"autoStartDefaultKernel": True}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_PATH=str(home / "path"),
               IPYTHONDIR=str(home / "ipython"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    token, port = secrets.token_hex(16), _free_port()
    log = open(tmp_path / "jupyterlab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--IdentityProvider.token={token}", f"--port={port}",
         "--ServerApp.port_retries=0", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}",
         # nothing that reaches for the internet: no news feed, no update check, no PyPI extension listing
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
         "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: lets the test see the kernel's state
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({proc.returncode}):\n"
                                   + (tmp_path / "jupyterlab.log").read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("jupyter lab did not answer /api/status within 60 s:\n"
                                   + (tmp_path / "jupyterlab.log").read_text(errors="replace")[-3000:])
            time.sleep(0.3)
        yield base, token, tmp_path / "jupyterlab.log"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def test_quickstart_in_jupyterlab(browser_context, jupyter_lab):
    base, token, log = jupyter_lab
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page = browser_context.new_page()
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type in ("error", "warning") and console.append(f"{msg.type}: {msg.text}"))
    start = time.monotonic()
    try:
        page.goto(f"{base}/lab/tree/01_quickstart.ipynb?token={token}", timeout=60_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
        _run_all_cells(page)

        # The last cell prints this once every cell before it has run.
        page.locator(".jp-OutputArea-output", has_text="read back bit for bit").wait_for(timeout=150_000)
        assert not page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] "
                                ":text('Traceback')").count()

        viewer = page.locator(".wanlab-frame-viewer").first
        viewer.wait_for(state="visible", timeout=30_000)
        slider = viewer.locator(".widget-slider").first
        image = viewer.locator("img").first
        label = viewer.locator(".widget-html-content").last
        assert slider.is_visible() and image.is_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                               timeout=10_000)
        viewer.scroll_into_view_if_needed()
        assert "frame 0 / 16" in label.inner_text()
        before_src, before_pixels = image.get_attribute("src"), image.screenshot()
        page.screenshot(path=str(OUTPUT / "quickstart-before.png"))

        handle = slider.locator(".noUi-handle").first
        handle.focus()
        for _ in range(3):
            handle.press("ArrowRight")
        try:
            page.wait_for_function("el => el.innerText.includes('frame 3 / 16')", arg=label.element_handle(),
                                   timeout=15_000)
        except Exception:  # keyboard steps not taken by this slider version: drag the handle instead
            box = slider.locator(".noUi-base, .noUi-target").first.bounding_box()
            page.mouse.move(*_centre(handle.bounding_box()))
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            page.wait_for_function("el => !el.innerText.includes('frame 0 / 16')", arg=label.element_handle(),
                                   timeout=15_000)
        page.wait_for_function("([img, src]) => img.getAttribute('src') !== src && img.complete",
                               arg=[image.element_handle(), before_src], timeout=15_000)
        after_pixels = image.screenshot()
        assert image.get_attribute("src") != before_src
        assert after_pixels != before_pixels, "the slider moved but the image shown did not change"
        shown = label.inner_text()
        assert re.search(r"frame [1-9]\d* / 16 · t = \d\.\d\d s", shown), shown

        # wanlab.show's player ran inside JupyterLab (its script executed: the output is trusted).
        player = page.locator(".wanlab-show").first
        player.scroll_into_view_if_needed()
        page.wait_for_selector(".wanlab-show[data-wanlab-ready]", timeout=10_000)
        player.locator(".wanlab-play").click()
        page.wait_for_function("el => Number(el.dataset.frame) >= 2", arg=player.element_handle(), timeout=10_000)
        player.locator(".wanlab-play").click()
        player.screenshot(path=str(OUTPUT / "quickstart-show.png"))
        frames = [int(x) for x in player.locator("img.wanlab-frame").evaluate_all(
            "els => els.map(e => e.dataset.frame)")]
        assert len(frames) == 2 and frames[0] == frames[1] == int(player.get_attribute("data-frame"))

        viewer.scroll_into_view_if_needed()
        page.screenshot(path=str(OUTPUT / "quickstart.png"))
        print(f"JupyterLab quickstart: {time.monotonic() - start:.1f} s; screenshots in {OUTPUT}")
    except Exception:
        page.screenshot(path=str(OUTPUT / "quickstart-failure.png"))
        print(log.read_text(errors="replace")[-4000:])
        print("browser console:\n" + "\n".join(console[-40:]))
        raise
    finally:
        page.close()
    assert not errors, errors


#: True once the notebook's kernel is connected and idle.
KERNEL_READY_JS = """() => {
  const app = window.jupyterapp;
  const widget = app && app.shell.currentWidget;
  const kernel = widget && widget.sessionContext && widget.sessionContext.session
                 && widget.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


def _run_all_cells(page, attempts: int = 4) -> None:
    """Run > Run All Cells, once the kernel answers. The first kernel websocket can fail while the kernel
    is still starting (the frontend then reconnects) and requests sent meanwhile are lost, so this
    retries until the first code cell has started ("[*]" or "[1]")."""
    first_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    page.wait_for_function(KERNEL_READY_JS, timeout=90_000)
    for _ in range(attempts):
        _accept_kernel_dialog(page)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        _accept_kernel_dialog(page)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if re.search(r"\[(\*|\d+)\]", first_prompt.inner_text()):
                return
            page.wait_for_timeout(250)
    raise AssertionError(f"Run All Cells did not start the first cell after {attempts} attempts")


def _accept_kernel_dialog(page) -> None:
    """Older JupyterLab versions ask which kernel to start; take the notebook's own (python3)."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count():
        dialog.locator("button", has_text="Select").click()


def _centre(box: dict) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
