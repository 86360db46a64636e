"""Hostile `stclip train` inputs: number flags, checkpoints to resume and unreadable frames. Each is exit 1 with one
``error:`` line naming the flag, file or frame, no traceback, and no input file changes; a data-loading worker's
error ends the run in one line, never a hang."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import one_line_error
from stclip_cli.cli import app
from synthetic import make_jhmdb

runner = CliRunner()
TRAIN = ["--dataset", "jhmdb", "--split", "1", "--model", "tiny-test", "--batch-size", "4", "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_jhmdb(tmp_path_factory.mktemp("jhmdb"), videos_per_class=2, frames=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root) -> Path:
    """last.safetensors of a one-step run (read only)."""
    out = tmp_path_factory.mktemp("run")
    result = runner.invoke(app, ["train", *TRAIN, "--data-root", str(data_root), "--iterations", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "last.safetensors"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def tree_bytes(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("flag, value, message", [
    ("--iterations", "0", "--iterations must be a whole number of at least 1 (got 0)"),
    ("--iterations", "-5", "--iterations must be a whole number of at least 1 (got -5)"),
    ("--log-every", "0", "--log-every must be a whole number of at least 1"),
    ("--checkpoint-every", "0", "--checkpoint-every must be a whole number of at least 1"),
    ("--batch-size", "0", "--batch-size must be a whole number of at least 1"),
    ("--max-boxes", "0", "--max-boxes must be a whole number of at least 1"),
    ("--workers", "-1", "--workers must be a whole number from 0 to 128"),
    ("--warmup-iters", "-1", "--warmup-iters must be a whole number of at least 0"),
    ("--seed", "-1", "--seed must be a whole number from 0 to 4294967295"),
    ("--lr", "0", "--lr must be a number above 0"),
    ("--lr", "nan", "--lr must be a number above 0"),
    ("--lr", "inf", "--lr must be a number above 0"),
    ("--momentum", "1", "--momentum must be a number from 0 to below 1"),
    ("--momentum", "nan", "--momentum must be a number from 0 to below 1"),
    ("--weight-decay", "-1e-3", "--weight-decay must be a number of at least 0"),
    ("--warmup-factor", "2", "--warmup-factor must be a number from 0 to 1"),
])
def test_bad_number_flag_is_one_line_before_the_dataset_loads(tmp_path, flag, value, message):
    out = tmp_path / "run"
    line = one_line_error(invoke("train", *TRAIN, "--data-root", tmp_path / "nowhere", "--out", out, flag, value))
    assert line == f"error: {message}" or line.startswith(f"error: {message} (got"), line
    assert not out.exists()


def test_every_train_option_has_help():
    import click
    import typer.main

    command = typer.main.get_command(app).commands["train"]
    undocumented = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
    assert undocumented == []


def resume_case(tmp_path: Path, trained: Path, tensors=None, meta=None) -> Path:
    """A run folder whose last.safetensors is ``trained`` with some tensors and metadata changed."""
    with safe_open(str(trained), framework="np") as f:
        stored = json.loads(f.metadata()["stclip"])
    out = tmp_path / "run"
    out.mkdir()
    save_file(tensors or load_file(str(trained)), str(out / "last.safetensors"),
              metadata={"stclip": json.dumps(meta(stored) if meta else stored)})
    return out


def first_model_tensor(tensors: dict) -> str:
    return sorted(k for k in tensors if k.startswith("model."))[0]


def drop_tensor(t):
    t.pop(first_model_tensor(t))
    return t


def reshape_tensor(t):
    name = first_model_tensor(t)
    t[name] = torch.zeros(3, 5)
    return t


def nan_tensor(t):
    name = first_model_tensor(t)
    t[name] = torch.full_like(t[name], float("nan"))
    return t


def bad_rng(t):
    t["rng.torch"] = torch.zeros(3)
    return t


RESUME_CASES = [
    ("missing-tensor", drop_tensor, None, "lacks tensor model."),
    ("wrong-shape", reshape_tensor, None, "this model needs"),
    ("nan-tensor", nan_tensor, None, "holds NaN or infinite values"),
    ("bad-rng", bad_rng, None, "tensor rng.torch is torch.float32 (3,), not a torch random state"),
    ("step-text", None, lambda m: {**m, "step": "1"}, "metadata step must be null or a whole number of at least 0 (got \"1\")"),
    ("step-float", None, lambda m: {**m, "step": 0.5}, "metadata step must be null or a whole number of at least 0 (got 0.5)"),
    ("step-null", None, lambda m: {**m, "step": None}, "records no training step"),
    ("step-done", None, lambda m: {**m, "step": 3}, "is already at step 3; --iterations 3 leaves nothing to train"),
    ("other-card", None, lambda m: {**m, "card": {**m["card"], "lora_alpha": 2.0}}, "was trained with lora_alpha 2.0 (this run: 1.0)"),
    ("other-classes", None, lambda m: {**m, "classes": ["x"]}, "was trained on other classes"),
    ("other-split", None, lambda m: {**m, "split": 2}, "is a jhmdb split 2 run; it cannot resume jhmdb split 1"),
    ("metadata-list", None, lambda m: [m], "its stclip metadata must be a JSON object, not list"),
]


@pytest.mark.parametrize("case, tensors, meta, message", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_bad_checkpoint_to_resume_is_one_line(tmp_path, data_root, trained, case, tensors, meta, message):
    out = resume_case(tmp_path, trained, tensors(load_file(str(trained))) if tensors else None, meta)
    before, data_before = tree_bytes(out), tree_bytes(data_root)
    line = one_line_error(invoke("train", *TRAIN, "--data-root", data_root, "--out", out, "--iterations", "3", "--resume"))
    assert str(out / "last.safetensors") in line and message in line, line
    assert tree_bytes(out) == before and tree_bytes(data_root) == data_before


@pytest.fixture
def broken_root(tmp_path, data_root) -> Path:
    """The synthetic J-HMDB with frame 5 of every train-half video replaced by bytes that are no image."""
    root = tmp_path / "broken"
    shutil.copytree(data_root, root)
    for folder in (root / "videos").glob("*/*_0"):
        (folder / "00005.png").write_bytes(b"not a png")
    return root


@pytest.mark.parametrize("workers", ["0", "2"])
def test_unreadable_frame_ends_training_in_one_line(tmp_path, broken_root, workers):
    before = tree_bytes(broken_root)
    line = one_line_error(invoke("train", *TRAIN, "--workers", workers, "--data-root", broken_root, "--out", tmp_path / "run",
                                 "--iterations", "20"))
    assert line.startswith("error: cannot read image ") and line.endswith("/00005.png"), line
    assert tree_bytes(broken_root) == before and not (tmp_path / "run" / "final.safetensors").exists()


@pytest.mark.slow
def test_worker_error_never_hangs(tmp_path, broken_root):
    """The real command, with two workers, three times: each ends within the timeout with one line."""
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        cmd = [sys.executable, "-m", "stclip_cli", "train", *TRAIN, "--workers", "2",
               "--data-root", str(broken_root), "--out", str(out), "--iterations", "20"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: cannot read image"), proc.stderr


def test_training_prints_no_warning(tmp_path, data_root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("train", *TRAIN[:-1], "--data-root", data_root, "--out", tmp_path / "run", "--iterations", "2",
                        "--log-every", "2")
    assert result.exit_code == 0, result.output
    ours = [str(w.message) for w in caught if "stclip_cli" in w.filename]
    assert ours == []
