"""The workbench in a real browser: JupyterLab headless on loopback, Debian's Chromium via Playwright.

Opens notebooks/00_quickstart.ipynb (a copy, so the repository's notebook is never saved with
outputs, with one cell added that shows a fresh workbench), runs all cells, and checks that
- the widgets rendered (no "Error displaying widget" / "model not found"),
- no image in any workbench is broken, before the first compile included (placeholders),
- before the first compile the progress counts to the configured steps (not "0 / 1"),
- the per-core heatmap image is not blank and has a colorbar (its pixels, read back),
- clicking Train advances the loss plot (a new image and a later step),
- the kernel table's last column can be scrolled to, not cut off,
then saves out/browser_workbench.png, out/browser_workbench_before_compile.png and
out/browser_workbench_report.png. It also opens notebooks/00_wafer_101.ipynb (a copy), runs it,
checks that every image in it loads (no broken image anywhere in the DOM) and that each of its
pictures has content, and saves the whole notebook as out/browser_wafer_101.png.

Needs /usr/bin/chromium (`make test` installs it with apt-get when it runs as root), the Python
packages playwright and jupyterlab (the dev extra). Without them the test skips and says why;
`playwright install` is never run: the system Chromium is used.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "00_quickstart.ipynb"
TOUR = "00_wafer_101.ipynb"
SCREENSHOT = ROOT / "out" / "browser_workbench.png"
BEFORE_COMPILE = ROOT / "out" / "browser_workbench_before_compile.png"
REPORT = ROOT / "out" / "browser_workbench_report.png"
TOUR_SHOT = ROOT / "out" / "browser_wafer_101.png"
TOUR_PICTURES = 4           # the core, the mesh, a kernel, a wavelet (tour.draw_*)
# appended to the notebook's copy: a workbench nobody has compiled yet, shown last
FRESH_CELL = ('fresh = wb.Workbench.from_config(cfg)\n'
              'fresh.widget.add_class("wsebench-fresh")\n'
              'fresh')
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"no browser: {CHROMIUM} is missing (install Debian's chromium: "
                "`apt-get install -y chromium`, which `make test` does when run as root)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed: pip install -e .[dev]")
pytest.importorskip("jupyterlab", reason="jupyterlab is not installed: pip install -e .[dev]")

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """Lab settings for a test: every cell in the DOM, no news or update checks, no autosave."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    }
    for name, value in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("lab")
    work = home / "notebooks"
    work.mkdir()
    notebook = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())
    notebook["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {},
                              "outputs": [], "source": FRESH_CELL})
    (work / NOTEBOOK).write_text(json.dumps(notebook))
    (work / TOUR).write_text((ROOT / "notebooks" / TOUR).read_text())
    _settings(home / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "WSEBENCH_FAST": "1", "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           # the kernel spec says "python": make it this interpreter, and find this checkout
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
               "PYTHONPATH", "").split(os.pathsep) if p])}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
           f"--LabServerApp.user_settings_dir={home / 'settings'}",
           f"--LabServerApp.workspaces_dir={home / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")          # CI runs the tests as root
    log = open(home / "server.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" +
                                       (home / "server.log").read_text()[-3000:])
                time.sleep(0.3)
        yield {"base": base, "token": token, "log": home / "server.log"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


RUN_ALL = """async () => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    await panel.context.ready;
    await panel.sessionContext.ready;
    await app.commands.execute('notebook:run-all-cells');
    return true;
}"""

NOTEBOOK_READY = """name => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    return !!(panel && panel.context && panel.context.path === name && panel.sessionContext &&
              panel.content && panel.content.widgets.length);
}"""

ALL_CELLS_DONE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const cells = panel.content.widgets.filter(c => c.model.type === 'code');
    return !!kernel && kernel.status === 'idle' &&
        cells.every(c => c.model.executionCount !== null);
}"""

CELL_ERRORS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const errors = [];
    for (const c of panel.content.widgets) {
        if (c.model.type !== 'code') continue;
        for (const o of c.model.outputs.toJSON())
            if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
    }
    return errors;
}"""

PIXELS = """img => {
    if (!img.complete || !img.naturalWidth) return {width: 0, colors: 0, std: 0};
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const colors = new Set();
    let sum = 0, sum2 = 0, n = 0;
    for (let i = 0; i < d.length; i += 4) {
        colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        const v = (d[i] + d[i + 1] + d[i + 2]) / 3;
        sum += v; sum2 += v * v; n++;
    }
    const mean = sum / n;
    return {width: img.naturalWidth, colors: colors.size, std: Math.sqrt(sum2 / n - mean * mean)};
}"""


BROKEN_IMAGES = """() => {
    const images = [...document.querySelectorAll('.wsebench-workbench img')];
    return {count: images.length,
            broken: images.filter(i => !i.complete || !i.naturalWidth).map(i => i.className)};
}"""

# The longest run of one pixel column whose colours are consecutive entries of the colour scale
# (the `viridis` table, passed in): a colorbar is a gradient over most of the scale, while a
# heatmap region has a few values (one per core) and free cores are grey.
COLORBAR = """(img, table) => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const nearest = (r, g, b) => {
        let best = -1, dist = 12 * 12 * 3;
        table.forEach(([tr, tg, tb], k) => {
            const e = (r - tr) ** 2 + (g - tg) ** 2 + (b - tb) ** 2;
            if (e < dist) { dist = e; best = k; }
        });
        return best;
    };
    let best = 0;
    for (let x = Math.floor(c.width / 2); x < c.width; x++) {
        const seen = new Set();
        for (let y = 0; y < c.height; y++) {
            const i = 4 * (y * c.width + x), k = nearest(d[i], d[i + 1], d[i + 2]);
            if (k >= 0) seen.add(k);
        }
        best = Math.max(best, seen.size);
    }
    return best;
}"""


# The kernel table's last column ("SRAM/core (B)", once cut off at 1400 px): scrolled to the end
# of its box, it shows inside the box, and the box inside the notebook's output area.
KERNEL_TABLE = """() => {
    const view = document.querySelector('.wsebench-workbench .wsebench-report-view');
    const th = [...view.querySelectorAll('th')].find(t => t.innerText.trim() === 'SRAM/core (B)');
    if (!th) return null;
    const box = th.closest('.wsebench-scroll');
    const output = view.closest('.jp-OutputArea-output') || document.body;
    box.scrollLeft = box.scrollWidth;
    const b = box.getBoundingClientRect(), t = th.getBoundingClientRect();
    const o = output.getBoundingClientRect();
    return {overflow: getComputedStyle(box).overflowX,
            inBox: t.left >= b.left - 1 && t.right <= b.right + 1,
            boxInOutput: b.left >= o.left - 1 && b.right <= o.right + 1};
}"""


# Every image in the page (outputs, Markdown, the Lab's own chrome): which are broken, and the
# pictures in the notebook's outputs
ALL_IMAGES = """() => {
    const all = [...document.querySelectorAll('img')];
    const outputs = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img')];
    return {count: all.length, outputs: outputs.length,
            broken: all.filter(i => !i.complete || !i.naturalWidth).map(i => i.src.slice(0, 80))};
}"""

# The notebook's full height (its scroller is the content node or its windowed panel inside),
# every scroller back at the top, so that a viewport this tall shows the whole notebook
NOTEBOOK_TO_TOP = """() => {
    const nb = window.jupyterapp.shell.currentWidget.content.node;
    const scrollers = [nb, ...nb.querySelectorAll('.jp-WindowedPanel-outer')];
    scrollers.forEach(el => { el.scrollTop = 0; });
    return Math.max(...scrollers.map(el => el.scrollHeight));
}"""


def _viridis() -> list[list[int]]:
    import matplotlib
    return [[round(255 * v) for v in matplotlib.colormaps["viridis"](k / 255)[:3]]
            for k in range(256)]


@contextlib.contextmanager
def _page(width: int, height: int):
    """A page of Debian's Chromium, headless, with a `width` x `height` viewport."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(90_000)
            yield page
        finally:
            browser.close()


def test_workbench_in_jupyterlab(lab):
    with _page(1500, 2400) as page:
        _open_and_run(page, lab, NOTEBOOK)

        # 1. the widgets rendered
        bench = page.locator(".wsebench-workbench").first
        bench.wait_for(state="visible")
        text = page.inner_text("body")
        assert "Error displaying widget" not in text
        assert "model not found" not in text
        assert page.locator(".wsebench-train").count() >= 1

        # 1b. before the first compile: placeholders, not broken images; the steps counted
        fresh = page.locator(".wsebench-fresh").first
        fresh.wait_for(state="visible")
        page.wait_for_function(f"() => ({BROKEN_IMAGES})().broken.length === 0",
                               timeout=30_000)
        images = page.evaluate(BROKEN_IMAGES)
        assert images["count"] >= 6 and images["broken"] == [], images   # 2 workbenches
        label = fresh.locator(".wsebench-progress").inner_text()
        counted = re.search(r"(\d+) / (\d+)", label)
        assert counted and counted[1] == "0" and int(counted[2]) > 1, label   # not "0 / 1"
        for view in ("loss", "heatmap", "placement"):
            stats = fresh.locator(f"img.wsebench-{view}").evaluate(PIXELS)
            assert stats["width"] > 0 and stats["colors"] >= 3, (view, stats)
        BEFORE_COMPILE.parent.mkdir(parents=True, exist_ok=True)
        fresh.scroll_into_view_if_needed()
        fresh.screenshot(path=str(BEFORE_COMPILE))
        assert BEFORE_COMPILE.stat().st_size > 10_000

        # 2. the heatmap is not blank
        heat = bench.locator("img.wsebench-heatmap")
        heat.scroll_into_view_if_needed()
        page.wait_for_function("""() => {
            const i = document.querySelector('.wsebench-workbench img.wsebench-heatmap');
            return i && i.complete && i.naturalWidth > 0;
        }""")
        stats = heat.evaluate(PIXELS)
        assert stats["width"] > 0 and stats["colors"] >= 4 and stats["std"] > 5, stats
        # ... and has a colorbar: a column spanning most of the colour scale
        assert heat.evaluate(COLORBAR, _viridis()) >= 100

        # 3. clicking Train advances the loss plot
        loss = bench.locator("img.wsebench-loss")
        status = bench.locator(".wsebench-status")
        before_src = loss.get_attribute("src")
        before = loss.evaluate(PIXELS)
        before_step = _step(status.inner_text())
        assert before["width"] > 0 and before_step >= 1
        bench.locator(".wsebench-train").click()
        page.wait_for_function(
            """([step]) => {
                const s = document.querySelector('.wsebench-workbench .wsebench-status');
                const m = s && s.innerText.match(/done.*step (\\d+)/);
                return m && Number(m[1]) > step;
            }""", arg=[before_step], timeout=120_000, polling=250)
        page.wait_for_function(
            """([src]) => {
                const i = document.querySelector('.wsebench-workbench img.wsebench-loss');
                return i && i.src !== src && i.complete && i.naturalWidth > 0;
            }""", arg=[before_src], timeout=30_000)
        after_step = _step(status.inner_text())
        after = loss.evaluate(PIXELS)
        assert after_step > before_step
        assert after["width"] > 0 and after != before or loss.get_attribute("src") != before_src

        # the last redraw (loss, then heatmap, then report) may still be on its way
        _settled(bench.locator("img.wsebench-heatmap"))
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        bench.scroll_into_view_if_needed()
        bench.screenshot(path=str(SCREENSHOT))
        assert SCREENSHOT.stat().st_size > 10_000

        # 4. the kernel table scrolls instead of being cut off
        table = page.evaluate(KERNEL_TABLE)
        assert table == {"overflow": "auto", "inBox": True, "boxInOutput": True}, table
        report = bench.locator(".wsebench-report-view")
        report.scroll_into_view_if_needed()
        report.screenshot(path=str(REPORT))


def _settled(image, quiet: float = 1.5, timeout: float = 30.0) -> None:
    """Until `image`'s src has not changed for `quiet` seconds (or `timeout` passed)."""
    end = time.monotonic() + timeout
    src = image.get_attribute("src")
    while time.monotonic() < end:
        time.sleep(quiet)
        now = image.get_attribute("src")
        if now == src:
            return
        src = now


def _step(status_text: str) -> int:
    m = re.search(r"step (\d+)", status_text)
    return int(m.group(1)) if m else 0


def _open_and_run(page, lab, name: str) -> None:
    """Open notebook `name` in the Lab, run all its cells and wait until they are done."""
    # a workspace of its own, reset: the notebook a test opened before stays closed
    page.goto(f"{lab['base']}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={lab['token']}")
    page.wait_for_function(NOTEBOOK_READY, arg=name, timeout=90_000)
    page.evaluate(RUN_ALL)
    page.wait_for_function(ALL_CELLS_DONE, timeout=150_000, polling=500)
    assert page.evaluate(CELL_ERRORS) == []


def test_wafer_101_in_jupyterlab(lab):
    with _page(1200, 1600) as page:
        _open_and_run(page, lab, TOUR)
        page.wait_for_function(f"""() => {{
            const s = ({ALL_IMAGES})();
            return s.outputs >= {TOUR_PICTURES} && s.broken.length === 0;
        }}""", timeout=30_000)
        images = page.evaluate(ALL_IMAGES)
        assert images["broken"] == [] and images["outputs"] >= TOUR_PICTURES, images
        pictures = page.locator(".jp-Notebook .jp-OutputArea-output img")
        for k in range(pictures.count()):     # drawn, not blank
            stats = pictures.nth(k).evaluate(PIXELS)
            assert stats["width"] > 100 and stats["colors"] >= 8 and stats["std"] > 5, (k, stats)
        # the whole notebook in one picture: a viewport as tall as the notebook
        height = page.evaluate(NOTEBOOK_TO_TOP)
        page.set_viewport_size({"width": 1200, "height": min(int(height) + 200, 16_000)})
        page.wait_for_timeout(500)
        page.evaluate(NOTEBOOK_TO_TOP)
        assert page.evaluate(ALL_IMAGES)["broken"] == []
        TOUR_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(TOUR_SHOT))
        assert TOUR_SHOT.stat().st_size > 50_000
