"""`stclip app` (stclip_cli/app.py): the page in a real browser (headless Chromium from the system packages, driven
by Playwright), where it listens, and what a session leaves behind. Browser tests skip when no Chromium or
Playwright is found, except in CI ($CI set), where they fail."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SAMPLE_CLIP
from stclip_cli.app import AppSettings, Sessions

ACTIONS = "arm wrestling, clapping"
SAMPLE_FRAMES = 280  # arm_wrestling.mp4: 10 s at 28 fps


def need(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` fails; in CI, fail instead (the browser tests must run there)."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def chromium() -> str | None:
    """The system's Chromium (Debian: chromium; elsewhere chromium-browser or google-chrome)."""
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> Path:
    """Two persons on every frame of the sample clip, as a COCO-results list."""
    path = tmp_path_factory.mktemp("boxes") / "boxes.json"
    persons = ([30, 40, 120, 200], [180, 40, 130, 200])
    path.write_text(json.dumps([{"image_id": f, "bbox": b, "score": 0.9} for f in range(SAMPLE_FRAMES) for b in persons]))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(checkpoint, boxes, tmp_path_factory):
    """The app on a free port of 127.0.0.1, in this process, with the tiny checkpoint and the boxes file."""
    need(importlib.util.find_spec("gradio") is not None, 'Gradio is not installed (pip install "stclip[app]")')
    from stclip_cli.app import build_app

    settings = AppSettings(model="tiny-test", checkpoint=str(checkpoint), boxes=str(boxes), device="cpu",
                           port=free_port(), quiet=True)
    app = build_app(settings, root=tmp_path_factory.mktemp("app"))
    app.launch(block=False)
    yield app, f"http://127.0.0.1:{settings.port}/"
    app.close()


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium through Playwright."""
    need(importlib.util.find_spec("playwright") is not None, "Playwright is not installed (pip install playwright)")
    executable = chromium()
    need(executable is not None, "no Chromium found (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


VIDEO = "#stclip-video video"


def start_job(page, url: str, upload: Path, actions: str = ACTIONS) -> None:
    page.goto(url)
    page.locator("#stclip-upload input[type=file]").set_input_files(str(upload))
    page.locator("#stclip-actions textarea, #stclip-actions input").first.fill(actions)
    page.locator("#stclip-run").click()


ROWS = "#stclip-events [role=row][data-index]"


def cell(page, row: int, col: int):
    return page.locator(f'#stclip-events [role=gridcell][data-row="{row}"][data-col="{col}"]')


def table_rows(page) -> list[list[str]]:
    count = page.locator(ROWS).count()
    return [[cell(page, r, c).inner_text().strip() for c in range(5)] for r in range(count)]


def downloads(page) -> dict[str, bytes]:
    """Each download link's file name and what fetching it returns."""
    links = page.locator("#stclip-downloads a[href]")
    found = {}
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href")
        found[Path(href.split("?")[0]).name] = page.request.get(href).body()
    return found


def kept_files(root: Path) -> list[Path]:
    """Files with content under the app's folder (Gradio leaves an empty temporary file of its own until exit)."""
    return [p for p in root.rglob("*") if p.is_file() and p.stat().st_size]


@pytest.mark.slow
def test_upload_detect_watch_seek_and_download_in_a_browser(served, browser, tmp_path):
    app, url = served
    started = time.monotonic()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    start_job(page, url, SAMPLE_CLIP)
    page.wait_for_function(f"() => {{ const v = document.querySelector('{VIDEO}'); return v && v.duration > 0; }}",
                           timeout=90_000)
    page.wait_for_selector(ROWS, timeout=10_000)
    assert page.evaluate(f"document.querySelector('{VIDEO}').duration") > 9
    played = page.evaluate(f"""async () => {{
        const v = document.querySelector('{VIDEO}'); v.muted = true; await v.play();
        const t0 = v.currentTime; await new Promise(r => setTimeout(r, 1500)); v.pause(); return [t0, v.currentTime]; }}""")
    assert played[1] > played[0] + 0.3, played  # it plays: the time advances

    files = downloads(page)
    result = json.loads(files["arm_wrestling.stclip.json"])
    assert len(result["frames"]) == SAMPLE_FRAMES
    events = json.loads(files["arm_wrestling.events.json"])["events"]
    assert events, "the tiny model with two actions gives each tracked person an event"
    expected = [[f"#{e['track_id']}", e["action"], f"{e['start']:.2f}", f"{e['end']:.2f}"] for e in events]
    shown = table_rows(page)
    assert [[r[0], r[1], f"{float(r[2]):.2f}", f"{float(r[3]):.2f}"] for r in shown] == expected, shown
    assert files["arm_wrestling.stclip.csv"].splitlines()[1].startswith(b"arm_wrestling,0.000,")  # rows under a header

    page.evaluate(f"document.querySelector('{VIDEO}').currentTime = 5")
    last = len(shown) - 1
    cell(page, last, 1).click()
    start = events[last]["start"]
    page.wait_for_function(f"() => Math.abs(document.querySelector('{VIDEO}').currentTime - {start}) < 0.1",
                           timeout=10_000)
    assert app.runner.builds == 1
    if target := os.environ.get("STCLIP_APP_SCREENSHOT"):
        page.evaluate(f"document.querySelector('{VIDEO}').currentTime = 4")
        page.wait_for_timeout(500)
        page.screenshot(path=target, full_page=True)
    page.close()  # the session ends: its upload, its outputs and the copies Gradio served are removed
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and kept_files(app.sessions.root):
        time.sleep(0.25)
    assert not kept_files(app.sessions.root)
    assert time.monotonic() - started < 60


def test_a_non_video_upload_shows_the_clis_one_line_error(served, browser, tmp_path):
    from stclip_cli.errors import StclipError
    from stclip_cli.sources.video import open_video

    app, url = served
    notes = tmp_path / "notes.mp4"
    notes.write_text("these are notes, not a video\n")
    with pytest.raises(StclipError) as cli:
        open_video(notes)
    expected = str(cli.value).replace(str(notes), notes.name)
    page = browser.new_page()
    start_job(page, url, notes)
    toast = page.get_by_text(expected)
    toast.first.wait_for(timeout=20_000)
    assert "\n" not in expected
    page.close()


def test_listens_on_localhost_by_default_and_never_shares(monkeypatch, checkpoint, boxes):
    need(importlib.util.find_spec("gradio") is not None, 'Gradio is not installed (pip install "stclip[app]")')
    import gradio

    from stclip_cli.cli import app

    calls = []
    monkeypatch.setattr(gradio.Blocks, "launch", lambda self, **kw: calls.append(kw))
    common = ["app", "--model", "tiny-test", "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--quiet"]
    runner = CliRunner()
    assert runner.invoke(app, common).exit_code == 0
    assert runner.invoke(app, [*common, "--host", "0.0.0.0", "--port", "8123"]).exit_code == 0
    assert [(c["server_name"], c["server_port"]) for c in calls] == [("127.0.0.1", 7860), ("0.0.0.0", 8123)]
    assert all(c["share"] is False and c["prevent_thread_lock"] is False for c in calls)


def test_a_session_end_removes_its_uploads_and_outputs(tmp_path):
    sessions = Sessions(tmp_path / "app")
    uploads = []
    for session in ("mine", "other"):
        upload = tmp_path / "app" / "gradio" / f"hash-{session}" / "clip.mp4"
        upload.parent.mkdir(parents=True)
        upload.write_bytes(b"video")
        sessions.uploaded(session, upload)
        (sessions.folder(session) / "clip.stclip.json").write_text("{}")
        uploads.append(upload)
    sessions.end("mine")
    assert not uploads[0].exists() and not uploads[0].parent.exists()
    assert not (tmp_path / "app" / "sessions" / "mine").exists()
    assert uploads[1].exists() and any((tmp_path / "app" / "sessions" / "other").rglob("*.json"))
    sessions.close()
    assert not (tmp_path / "app").exists()


def test_help_and_argument_errors_do_not_import_gradio(tmp_path):
    code = ("import sys\nfrom stclip_cli.cli import app\n"
            "try:\n    app(['app', '--boxes', sys.argv[1]])\nexcept SystemExit as done:\n"
            "    print('GRADIO', 'gradio' in sys.modules, 'EXIT', done.code)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing.json")], capture_output=True, text=True,
                          timeout=60)
    assert "GRADIO False EXIT 1" in proc.stdout, proc.stdout + proc.stderr
    assert "file not found" in proc.stderr and "--boxes" in proc.stderr
    help_proc = subprocess.run([sys.executable, "-m", "stclip_cli", "app", "--help"], capture_output=True, text=True,
                               timeout=60)
    assert help_proc.returncode == 0 and "127.0.0.1" in help_proc.stdout


def test_the_model_is_built_once_and_rebuilt_only_for_another_checkpoint(checkpoint, boxes, tmp_path, make_video):
    from stclip_cli.app import Runner

    video = make_video(tmp_path, n_frames=12)
    other = tmp_path / "other.safetensors"
    shutil.copyfile(checkpoint, other)
    runner = Runner(AppSettings(model="tiny-test", checkpoint=str(checkpoint), boxes=str(boxes), device="cpu"))
    jobs = [("wave, clap", checkpoint), ("run, jump, sit", checkpoint), ("run, jump, sit", other)]
    for n, (actions, weights) in enumerate(jobs):
        folder = tmp_path / f"job{n}"
        folder.mkdir()
        result = runner.run(video, "clip.mp4", runner.config(actions, "tiny-test", str(weights)), folder)
        written = json.loads(result.json.read_text())
        assert written["actions"] == [a.strip() for a in actions.split(",")] and written["video"] == "clip.mp4"
        assert result.video.stat().st_size and result.timeline.stat().st_size and result.events_file.is_file()
        assert runner.builds == (1, 1, 2)[n]
    assert not runner.lock.locked()
