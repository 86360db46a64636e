"""`stclip train` / `stclip eval` on a tiny synthetic J-HMDB in the real format, with the tiny model card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from stclip_cli.cli import app
from synthetic import make_jhmdb

runner = CliRunner()
TRAIN = ["--dataset", "jhmdb", "--split", "1", "--model", "tiny-test", "--batch-size", "4", "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_jhmdb(tmp_path_factory.mktemp("jhmdb"), videos_per_class=2, frames=10)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def test_resume_continues_exactly(tmp_path, data_root, monkeypatch):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = [*TRAIN, "--data-root", data_root, "--lr", "0.01", "--warmup-iters", "2", "--log-every", "1"]
    assert invoke("train", *common, "--out", straight, "--iterations", "6").exit_code == 0
    first = invoke("train", *common, "--out", split, "--iterations", "3")
    assert first.exit_code == 0, first.output
    again = invoke("train", *common, "--out", split, "--iterations", "3")
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = invoke("train", *common, "--out", split, "--iterations", "6", "--resume")
    assert resumed.exit_code == 0, resumed.output
    a, b = weights(straight / "final.safetensors"), weights(split / "final.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    rows = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "it_s"} <= set(rows[0])
    meta = json.loads(json.loads(json.dumps(__import__("safetensors").safe_open(str(split / "final.safetensors"), "pt").metadata()))["stclip"])
    assert (meta["dataset"], meta["split"], meta["step"], meta["card"]["backbone"]) == ("jhmdb", 1, 6, "stclip-tiny-test")
    # eval finds the data root the run was trained with, without --data-root or STCLIP_DATA
    monkeypatch.setenv("STCLIP_DATA", str(tmp_path / "nowhere"))
    result = invoke("eval", "--checkpoint", split / "final.safetensors", "--gt-boxes", "--quiet", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    # the reference's test pool: the official test half (one of each class's two videos); --pool all takes both
    assert json.loads((tmp_path / "e.json").read_text())["videos"] == 6
    result = invoke("eval", "--checkpoint", split / "final.safetensors", "--gt-boxes", "--quiet", "--json", tmp_path / "a.json",
                    "--pool", "all")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a.json").read_text())["videos"] == 12


@pytest.mark.slow
def test_training_learns_and_eval_runs_with_no_flags(tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STCLIP_DATA", str(data_root.parent))
    (data_root.parent / "jhmdb").exists() or (data_root.parent / "jhmdb").symlink_to(data_root)
    # an untrained checkpoint, written directly: `train --iterations 0` is refused (a "final" run of no steps)
    from stclip_cli.weights.cards import build_model, load_card, save_checkpoint

    torch.manual_seed(2)
    card = load_card("tiny-test")
    (tmp_path / "untrained").mkdir()
    save_checkpoint(tmp_path / "untrained" / "final.safetensors", build_model(card), card, {"dataset": "jhmdb", "split": 1, "step": 0})
    assert invoke("train", *TRAIN, "--iterations", "0", "--out", tmp_path / "zero").exit_code == 1
    assert json.loads(__import__("safetensors").safe_open(str(tmp_path / "untrained" / "final.safetensors"), "pt").metadata()["stclip"])["step"] == 0
    before = invoke("eval", "--checkpoint", tmp_path / "untrained" / "final.safetensors", "--gt-boxes", "--subset", "train",
                    "--quiet", "--json", tmp_path / "before.json")
    assert before.exit_code == 0, before.output
    result = invoke("train", *TRAIN, "--iterations", "300", "--lr", "0.05", "--warmup-iters", "20", "--log-every", "20")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "jhmdb-split1"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"], rows
    seen = invoke("eval", "--gt-boxes", "--subset", "train", "--quiet", "--json", tmp_path / "seen.json")
    assert seen.exit_code == 0, seen.output
    seen_map = json.loads((tmp_path / "seen.json").read_text())["map"]
    before_map = json.loads((tmp_path / "before.json").read_text())["map"]
    assert seen_map > before_map + 0.2 and seen_map > 0.6, (before_map, seen_map)
    unseen = invoke("eval", "--gt-boxes", "--quiet")
    assert unseen.exit_code == 0, unseen.output
    result = json.loads((run / "eval-test-gt.json").read_text())
    assert set(result["ap"]) == {"clap", "sit", "wave", "throw", "pullup", "catch"}
    assert result["dataset"] == "jhmdb" and result["split"] == 1
    detected = invoke("eval", "--single-action", "--quiet")
    assert detected.exit_code == 0, detected.output


def test_missing_data_and_no_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STCLIP_DATA", str(tmp_path / "nowhere"))
    result = invoke("train", "--dataset", "jhmdb", "--split", "3")
    assert result.exit_code == 1
    assert "nowhere/jhmdb" in result.output and "--data-root" in result.output
    result = invoke("eval", "--gt-boxes")
    assert result.exit_code == 1 and "stclip train" in result.output
    result = invoke("train", "--dataset", "kinetics", "--split", "1")
    assert result.exit_code == 1 and "unknown dataset" in result.output


def test_eval_prediction_file_against_gt(tmp_path):
    gt = {"images": [{"id": 10001, "movie": "v", "timestamp": "00001", "width": 80, "height": 60}],
          "annotations": [{"image_id": 10001, "bbox": [10, 10, 40, 50], "action_ids": [3]}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    pred = {"video": "v.mp4", "width": 80, "height": 60, "fps": 25.0, "num_frames": 1, "actions": ["clap", "sit"],
            "model": {"name": "x", "backbone": "y", "checkpoint": None, "mode": "softmax"},
            "frames": [{"index": 0, "time": 0.0, "persons": [{"box": [11, 10, 40, 50], "detector_score": 0.9, "track_id": None,
                                                             "scores": {"clap": 0.8, "sit": 0.2}}]}]}
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    result = invoke("eval", "--pred", tmp_path / "pred.json", "--gt", tmp_path / "gt.json", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["ap"]["clap"] == pytest.approx(1.0)
    result = invoke("eval", "--pred", tmp_path / "pred.json")
    assert result.exit_code == 1 and "--gt" in result.output


@pytest.mark.slow
def test_params_vitb16_within_3_percent_of_paper():
    result = invoke("params", "--model", "stclip-vitb16")
    assert result.exit_code == 0, result.output
    from stclip_cli.weights.cards import load_card
    from stclip_cli.model.params import PAPER_TUNED_PARAMETERS, parameter_report

    report = parameter_report(load_card("stclip-vitb16"))
    assert report.groups["LoRA (c_fc, c_proj, every layer)"] == 12 * 2 * 8 * (768 + 3072)
    assert abs(report.reference_total / PAPER_TUNED_PARAMETERS - 1) < 0.03
    assert f"{report.reference_total / 1e6:.2f} M" in result.output
    print(result.output)


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path, data_root):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "stclip_cli", "train", *TRAIN, "--data-root", str(data_root), "--out", str(out), "--iterations", "3",
           "--device", "cpu", "--log-every", "1"]
    temp = tmp_path / "tmp"  # torchrun's launcher leaves a torchelastic_* log folder in the temp folder
    temp.mkdir()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(temp)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "final.safetensors").is_file()
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3  # only rank 0 logs


def test_split_all_trains_on_every_class(tmp_path, data_root):
    out = tmp_path / "all"
    result = invoke("train", "--dataset", "jhmdb", "--split", "all", "--model", "tiny-test", "--batch-size", "2",
                    "--workers", "0", "--quiet", "--data-root", data_root, "--iterations", "1", "--out", out)
    assert result.exit_code == 0, result.output
    meta = json.loads(__import__("safetensors").safe_open(str(out / "final.safetensors"), "np").metadata()["stclip"])
    assert meta["split"] == 0 and len(meta["classes"]) == 21
    bad = invoke("train", "--dataset", "jhmdb", "--split", "zero", "--data-root", data_root)
    assert bad.exit_code == 1 and "--split must be a split number" in bad.output


def test_eval_takes_a_checkpoint_from_the_hub_cache(tmp_path, data_root, monkeypatch):
    from conftest import put_in_hub_cache

    out = tmp_path / "run"
    assert invoke(*["train", *TRAIN, "--data-root", data_root, "--iterations", "1", "--out", out]).exit_code == 0
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    put_in_hub_cache("lab/stclip-jhmdb-split1", "stclip.safetensors", (out / "final.safetensors").read_bytes())
    result = invoke("eval", "--checkpoint", "hf-hub:lab/stclip-jhmdb-split1", "--data-root", data_root, "--gt-boxes",
                    "--quiet", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e.json").read_text())["split"] == 1
