"""What a new user meets first: the design card's command, checkpoints from the environment or the Hub cache,
fast one-line errors, quiet third-party libraries, --help defaults and --version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stclip_cli import __version__
from conftest import put_in_hub_cache
from stclip_cli.cli import app
from stclip_cli.pipeline import FALLBACK_NOTE

runner = CliRunner()
ACTIONS = "brush teeth,fishing"
TINY_CLIP = ["--backbone", "stclip-tiny-test", "--pretrained", "none"]


def boxes_file(tmp_path: Path, n_frames: int) -> Path:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 30, 42], "score": 0.9} for f in range(n_frames)]))
    return path


def stclip(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stclip_cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_design_card_command_without_checkpoint_scores_with_the_baseline_and_says_so(tmp_path, make_video):
    video = make_video(tmp_path, n_frames=6)
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["detect", str(video), "--actions", ACTIONS, *TINY_CLIP, "--boxes",
                                 str(boxes_file(tmp_path, 6)), "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("note: no ST-CLIP checkpoint"), result.output
    model = json.loads(out.read_text())["model"]
    assert model["name"] == "baseline" and model["checkpoint"] is None and model["note"] == FALLBACK_NOTE


def test_checkpoint_from_environment_or_hub_cache_scores_with_stclip(tmp_path, make_video, checkpoint, monkeypatch):
    video = make_video(tmp_path, n_frames=6)
    boxes = boxes_file(tmp_path, 6)
    monkeypatch.setenv("STCLIP_CHECKPOINT", str(checkpoint))
    out = tmp_path / "env.json"
    result = runner.invoke(app, ["detect", str(video), "--actions", ACTIONS, "--boxes", str(boxes), "--json", str(out), "--quiet"])
    assert result.exit_code == 0 and result.output == "", result.output
    model = json.loads(out.read_text())["model"]
    assert (model["name"], model["checkpoint"], model["note"]) == ("tiny-test", str(checkpoint), None)
    monkeypatch.delenv("STCLIP_CHECKPOINT")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    put_in_hub_cache("lab/stclip-tiny", "stclip.safetensors", checkpoint.read_bytes())
    out = tmp_path / "hub.json"
    result = runner.invoke(app, ["detect", str(video), "--actions", ACTIONS, "--checkpoint", "hf-hub:lab/stclip-tiny",
                                 "--boxes", str(boxes), "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    model = json.loads(out.read_text())["model"]
    assert model["name"] == "tiny-test" and model["checkpoint"].endswith("stclip.safetensors")
    assert json.loads(out.read_text())["frames"] == json.loads((tmp_path / "env.json").read_text())["frames"]


@pytest.mark.slow
def test_offline_first_run_is_one_line_naming_file_and_flag(tmp_path, make_video):
    video = make_video(tmp_path, n_frames=4)
    for args in (["--model", "baseline"], []):  # the training-free model, and the design card's command itself
        proc = stclip("detect", video, "--actions", ACTIONS, *args, "--boxes", boxes_file(tmp_path, 4),
                      env={"HF_HUB_OFFLINE": "1"})
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1, proc.stdout + proc.stderr
        assert lines[0].startswith("error: no cached copy of CLIP weights ViT-B-16 (pretrained 'openai')")
        assert "https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/" in lines[0]
        assert lines[0].endswith("and pass --clip-weights FILE")


PROBE = """
import sys
from stclip_cli.cli import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    heavy = sorted(m for m in ("torch", "open_clip", "ultralytics", "av", "cv2") if m in sys.modules)
    print("HEAVY", ",".join(heavy), "EXIT", done.code)
"""


@pytest.mark.parametrize(
    "args, message",
    [
        (["detect", "{video}", "--actions", " , "], "no action names"),
        (["detect", "{video}", "--actions", "run,Run"], "duplicate action name"),
        (["detect", "{tmp}/missing.mp4", "--actions", "run"], "video not found"),
        (["detect", "{video}", "--actions", "run", "--clip-weights", "{tmp}/none.pt"], "--clip-weights"),
        (["detect", "{video}", "--actions", "run", "--checkpoint", "{tmp}/none.safetensors"], "checkpoint not found"),
        (["detect", "{video}", "--actions", "run", "--checkpoint", "{ckpt}", "--backbone", "ViT-B-16"], "was trained for backbone"),
        (["detect", "{video}", "--actions", "run", "--json", "{tmp}/no/such/out.json"], "cannot write"),
        (["detect", "{video}", "--actions", "run", "--boxes", "{tmp}/none.json"], "--boxes"),
    ],
)
def test_argument_mistakes_are_reported_before_torch_loads(tmp_path, checkpoint, args, message):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 16)
    filled = [a.format(video=video, tmp=tmp_path, ckpt=checkpoint) for a in args]
    proc = subprocess.run([sys.executable, "-c", PROBE, *filled], capture_output=True, text=True, timeout=60)
    assert message in proc.stderr, proc.stderr
    assert "HEAVY  EXIT 1" in proc.stdout, proc.stdout  # no heavy module was imported


def test_help_shows_every_default_and_version():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("[default: (3000; ava: 20000)]", "[default: (2.5e-4; ava: 4e-4)]", "[default: (800; ava: 2000)]",
                 "[default: (runs/<dataset>-split<K>)]", "[default: 0.9]"):
        assert text in result.output, text
    result = runner.invoke(app, ["detect", "--help"], env={"COLUMNS": "200"})
    assert "[default: (the card's)]" in result.output and "[default: ($STCLIP_CHECKPOINT)]" in result.output
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert 'Example: stclip detect video.mp4 --actions "brush teeth,fishing"' in top.output
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"stclip {__version__}"


def test_a_pytest_run_that_stops_on_a_usage_error_leaves_no_fresh_home_behind(tmp_path):
    """The suite's temporary HOME was removed only by a pytest hook that a usage error skips."""
    pattern = "stclip-tests-home-*"
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--no-such-flag"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], env={**os.environ, "TMPDIR": str(tmp_root)}, timeout=120)
    assert proc.returncode != 0 and "no-such-flag" in proc.stderr
    assert not list(tmp_root.glob(pattern))
