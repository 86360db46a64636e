"""Every output of every command is checked against every file and folder that command reads, not only its videos:
boxes, actions file, checkpoint, CLIP weights, detector, model card, data root and its annotation files, label maps,
manifests. Each case: exit 1, one ``error:`` line of the one message class, and every input byte for byte unchanged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from stclip_cli.cli import app
from synthetic import make_jhmdb

runner = CliRunner()
OVER = "would write over the input"
INTO = "is inside the input folder"


def invoke(*argv, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in argv], env=env)


def fingerprint(*paths: Path) -> dict[str, bytes]:
    """Every file under ``paths`` (files or folders) and its bytes."""
    out = {}
    for path in paths:
        for file in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            out[str(file)] = file.read_bytes()
    return out


def refused(result, message: str, *inputs: Path) -> str:
    line = one_line_error(result)
    assert message in line, line
    return line


@pytest.fixture
def detect_inputs(tmp_path, make_video, checkpoint) -> dict[str, Path]:
    """A clip and every other kind of file detect reads, each a real file of its kind."""
    video = make_video(tmp_path, n_frames=4)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 30, 40], "score": 0.9} for f in range(4)]))
    actions = tmp_path / "actions.txt"
    actions.write_text("clap\nwave\n")
    ckpt = tmp_path / "ck.safetensors"
    shutil.copy(checkpoint, ckpt)
    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"not really weights")
    detector = tmp_path / "det.pt"
    detector.write_bytes(b"not really a detector")
    from stclip_cli.weights.cards import CARDS_DIR

    card = tmp_path / "card.yaml"
    shutil.copy(CARDS_DIR / "tiny-test.yaml", card)
    return {"video": video, "boxes": boxes, "actions": actions, "checkpoint": ckpt, "weights": weights,
            "detector": detector, "card": card}


def detect_args(i: dict[str, Path]) -> list:
    return [i["video"], "--actions-file", i["actions"], "--model", "tiny-test", "--checkpoint", i["checkpoint"],
            "--boxes", i["boxes"], "--quiet"]


@pytest.mark.parametrize("read, flag", [("boxes", "--json"), ("actions", "--csv"), ("checkpoint", "--json"),
                                        ("boxes", "--jsonl"), ("actions", "--json")])
def test_detect_never_writes_over_a_file_it_reads(detect_inputs, read, flag):
    before = fingerprint(detect_inputs["video"].parent)
    line = refused(invoke("detect", *detect_args(detect_inputs), flag, detect_inputs[read]), OVER)
    assert str(detect_inputs[read]) in line
    assert fingerprint(detect_inputs["video"].parent) == before


@pytest.mark.parametrize("read, option", [("weights", "--clip-weights"), ("detector", "--detector"),
                                          ("card", "--model")])
def test_detect_never_writes_over_weights_detector_or_card(detect_inputs, read, option):
    argv = [detect_inputs["video"], "--actions", "clap,wave", "--quiet", option, detect_inputs[read],
            "--json", detect_inputs[read]]
    if read == "card":
        argv += ["--boxes", detect_inputs["boxes"]]
    before = fingerprint(detect_inputs["video"].parent)
    line = refused(invoke("detect", *argv), OVER)
    assert f"({option})" in line
    assert fingerprint(detect_inputs["video"].parent) == before


def test_a_link_or_hard_link_to_an_input_is_that_input(detect_inputs, tmp_path):
    link = tmp_path / "alias.json"
    link.symlink_to(detect_inputs["boxes"])
    hard = tmp_path / "hard.csv"
    os.link(detect_inputs["actions"], hard)
    before = fingerprint(tmp_path)
    refused(invoke("detect", *detect_args(detect_inputs), "--json", link), OVER)
    refused(invoke("detect", *detect_args(detect_inputs), "--csv", hard), OVER)
    assert fingerprint(tmp_path) == before


def test_the_checkpoint_from_the_environment_is_an_input_too(detect_inputs):
    argv = [detect_inputs["video"], "--actions", "clap,wave", "--model", "tiny-test", "--boxes", detect_inputs["boxes"],
            "--quiet", "--json", detect_inputs["checkpoint"]]
    before = detect_inputs["checkpoint"].read_bytes()
    refused(invoke("detect", *argv, env={"STCLIP_CHECKPOINT": str(detect_inputs["checkpoint"])}), OVER)
    assert detect_inputs["checkpoint"].read_bytes() == before


def test_distinct_outputs_beside_the_inputs_still_work(detect_inputs, tmp_path):
    before = fingerprint(tmp_path)
    result = invoke("detect", *detect_args(detect_inputs), "--json", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    assert fingerprint(tmp_path) == {**before, str(tmp_path / "out.json"): (tmp_path / "out.json").read_bytes()}


@pytest.fixture(scope="module")
def jhmdb_root(tmp_path_factory) -> Path:
    return make_jhmdb(tmp_path_factory.mktemp("jhmdb"), videos_per_class=2, frames=4, classes=["clap", "sit"])


def eval_args(checkpoint: Path, root: Path) -> list:
    return ["eval", "--dataset", "jhmdb", "--split", "1", "--data-root", root, "--model", "tiny-test",
            "--checkpoint", checkpoint, "--device", "cpu", "--quiet", "--gt-boxes"]


def test_eval_never_writes_over_the_ground_truth_in_the_data_root(checkpoint, jhmdb_root):
    before = fingerprint(jhmdb_root)
    line = refused(invoke(*eval_args(checkpoint, jhmdb_root), "--json", jhmdb_root / "jhmdb_test_gt_min.json"), INTO)
    assert "(--data-root)" in line
    refused(invoke(*eval_args(checkpoint, jhmdb_root), "--json", jhmdb_root / "new-result.json"), INTO)
    assert fingerprint(jhmdb_root) == before


def test_eval_data_root_from_the_environment_is_protected(checkpoint, jhmdb_root, tmp_path):
    base = tmp_path / "data"
    base.mkdir()
    (base / "jhmdb").symlink_to(jhmdb_root)
    argv = [a for a in eval_args(checkpoint, jhmdb_root) if a not in ("--data-root", jhmdb_root)]
    before = fingerprint(jhmdb_root)
    refused(invoke(*argv, "--json", jhmdb_root / "jhmdb_train_gt_min.json", env={"STCLIP_DATA": str(base)}), INTO)
    assert fingerprint(jhmdb_root) == before


def test_eval_never_writes_over_its_checkpoint_or_boxes(checkpoint, jhmdb_root, tmp_path):
    ckpt = tmp_path / "ck.safetensors"
    shutil.copy(checkpoint, ckpt)
    before = ckpt.read_bytes()
    refused(invoke(*eval_args(ckpt, jhmdb_root), "--json", ckpt), OVER)
    argv = [a for a in eval_args(ckpt, jhmdb_root) if a != "--gt-boxes"]
    detections = jhmdb_root / "jhmdb_faster_RCNN_person.json"
    copy = tmp_path / "dets.json"
    shutil.copy(detections, copy)
    refused(invoke(*argv, "--boxes", copy, "--json", copy), OVER)
    assert ckpt.read_bytes() == before and copy.read_bytes() == detections.read_bytes()


def test_eval_files_never_write_over_a_label_map_or_excluded_list(tmp_path):
    gt, pred, labels = tmp_path / "gt.csv", tmp_path / "pred.csv", tmp_path / "labels.pbtxt"
    gt.write_text("v,0902,0.1,0.1,0.5,0.5,1,0\n")
    pred.write_text("v,0902,0.1,0.1,0.5,0.5,1,0.9\n")
    labels.write_text('item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\n')
    before = fingerprint(tmp_path)
    refused(invoke("eval", "--pred", pred, "--gt", gt, "--label-map", labels, "--json", labels), OVER)
    assert fingerprint(tmp_path) == before


def test_train_run_folder_is_never_in_the_data_root(jhmdb_root, tmp_path):
    before = fingerprint(jhmdb_root)
    common = ["train", "--dataset", "jhmdb", "--split", "1", "--data-root", jhmdb_root, "--model", "tiny-test",
              "--iterations", "1", "--quiet", "--device", "cpu"]
    refused(invoke(*common, "--out", jhmdb_root), OVER)
    refused(invoke(*common, "--out", jhmdb_root / "runs"), INTO)
    weights = tmp_path / "run" / "last.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    refused(invoke(*common, "--out", tmp_path / "run", "--clip-weights", weights), OVER)
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    assert "is a file" in one_line_error(invoke(*common, "--out", file))
    assert fingerprint(jhmdb_root) == before and file.read_text() == "mine" and weights.read_bytes() == b"weights"


def test_import_reference_never_writes_into_what_it_reads(tmp_path):
    reference = tmp_path / "ref.pth"
    reference.write_bytes(b"reference")
    link = tmp_path / "new.safetensors"
    link.symlink_to(reference)
    assert "exists" in one_line_error(invoke("import-reference", reference, "--out", link))
    assert reference.read_bytes() == b"reference"


def test_ray_side_files_are_never_written_through_a_link(tmp_path, make_video):
    pytest.importorskip("pyarrow")
    from stclip_cli.corpus.engine import FAILURES_NAME, LOG_NAME, prepare, write_failures
    from stclip_cli.errors import StclipError

    video = make_video(tmp_path, n_frames=2)
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    rows = tmp_path / "rows"
    rows.mkdir()
    for name in (FAILURES_NAME, LOG_NAME):
        (rows / name).symlink_to(precious)
        with pytest.raises(StclipError, match="not a plain file"):
            prepare([str(video)], {"json": f"{tmp_path}/json/"}, rows)
        if name == FAILURES_NAME:  # written at the end of the run: checked again then
            with pytest.raises(StclipError, match="not a plain file"):
                write_failures(rows, [])
        (rows / name).unlink()
    assert precious.read_text() == "mine"


def test_ray_outputs_never_write_over_files_the_run_reads(tmp_path, make_video):
    pytest.importorskip("pyarrow")
    from stclip_cli.corpus.engine import prepare
    from stclip_cli.sinks.destinations import read_sources
    from stclip_cli.errors import StclipError

    video = make_video(tmp_path, n_frames=2)
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[]")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{video}\n")
    reads = read_sources([("--boxes", boxes), ("@manifest", manifest)])
    with pytest.raises(StclipError, match=OVER):
        prepare([str(video)], {"json": str(boxes)}, tmp_path / "rows", reads)
    with pytest.raises(StclipError, match=OVER):
        prepare([f"@{manifest}"], {"csv": str(manifest)}, tmp_path / "rows", reads)
    with pytest.raises(StclipError, match=INTO):
        prepare([str(video)], {"json": f"{tmp_path}/json/"}, tmp_path / "rows",
                read_sources([("--data", tmp_path)]))
    assert boxes.read_text() == "[]" and manifest.read_text() == f"{video}\n"


@pytest.mark.slow
def test_a_killed_runs_temporary_files_go_when_the_output_is_written_next(tmp_path, make_video, checkpoint):
    import signal
    import subprocess
    import sys
    import time

    video = make_video(tmp_path, n_frames=300, size=(160, 120))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 30, 40], "score": 0.9} for f in range(300)]))
    command = [sys.executable, "-m", "stclip_cli", "detect", str(video), "--actions", "clap,wave", "--model", "tiny-test",
               "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--quiet", "--video", str(tmp_path / "out.mp4")]

    def temporaries() -> list[str]:
        return [p.name for p in tmp_path.iterdir() if ".part" in p.name]

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not temporaries() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert temporaries(), "the killed run should have left its temporary video"
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert temporaries() == [] and (tmp_path / "out.mp4").stat().st_size > 0


def test_only_temporaries_of_dead_writers_on_this_machine_are_stale(tmp_path):
    import subprocess
    import sys

    from stclip_cli.sinks.destinations import Destination, host_name, classify, stale_temporaries

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    names = {"dead": f".out.p{dead}h{host_name()}.abcd1234.part.json",
             "alive": f".out.p{os.getppid()}h{host_name()}.abcd1234.part.json",
             "other machine": f".out.p{dead}h00000000.abcd1234.part.json",
             "other output": f".out2.p{dead}h{host_name()}.abcd1234.part.json",
             "earlier version": ".out.abcd1234.part.json"}
    for name in names.values():
        (tmp_path / name).write_text("x")
    target = classify(tmp_path / "out.json", "--json")
    assert stale_temporaries(target) == [tmp_path / names["dead"]]
    destination = Destination(target)
    destination.open().write("{}")
    destination.commit()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["out.json", *[n for k, n in names.items() if k != "dead"]])


@pytest.mark.slow
def test_a_closed_pipe_stops_quietly_and_leaves_nothing(tmp_path, make_video, checkpoint):
    """``stclip detect ... --json - | head -c 10``: no error line, no traceback, no temporary file (as cat stops)."""
    import subprocess
    import sys

    video = make_video(tmp_path, n_frames=40)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 30, 40], "score": 0.9} for f in range(40)]))
    command = [sys.executable, "-m", "stclip_cli", "detect", str(video), "--actions", "clap,wave", "--model", "tiny-test",
               "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--quiet", "--jsonl", "-",
               "--video", str(tmp_path / "out.mp4")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(10)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and stderr == "", stderr
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name or p.name == "out.mp4"] == []


@pytest.mark.slow
def test_standard_output_closed_at_start_is_one_line(tmp_path, make_video, checkpoint):
    import subprocess
    import sys

    video = make_video(tmp_path, n_frames=4)
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[]")
    command = [sys.executable, "-m", "stclip_cli", "detect", str(video), "--actions", "clap", "--model", "tiny-test",
               "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--quiet", "--csv", "-"]
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                          preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "error: cannot write standard output: it is closed; name an output file instead of -"), proc.stderr
