"""One assembly: ``DetectConfig`` holds detect's defaults and checks, and ``build_pipeline`` is the one builder that
single-process detect and the Ray actors use (the same model record, whatever the engine)."""

from __future__ import annotations

import dataclasses
import json
import math

import click
import numpy as np
import pytest
import typer

from stclip_cli.cli import app
from stclip_cli.errors import StclipError
from stclip_cli.pipeline import Assembly, DetectConfig, assemble, build_pipeline


@pytest.mark.parametrize("change, message", [
    ({"actions": ()}, "no action names"),
    ({"smooth": 0.5}, "--smooth needs --track"),
    ({"frame_fit": "stretch"}, "--frame-fit must be crop or letterbox"),
    ({"fps": math.nan}, "--fps must be a number above 0"),
    ({"fps": 0.0}, "--fps must be a number above 0"),
    ({"int8": True, "half": True}, "--int8 is the CPU path"),
    ({"int8": True, "device": "cuda"}, "--int8 is the CPU path"),
    ({"boxes_format": "coco"}, "--boxes-format describes a --boxes file"),
])
def test_config_refuses_bad_settings_when_made(change, message):
    with pytest.raises(StclipError, match=message):
        DetectConfig(**{"actions": ("clap",), **change})


def test_detect_options_take_their_defaults_from_the_config():
    command = typer.main.get_command(app).commands["detect"]
    defaults = {param.name: param.default for param in command.params if isinstance(param, click.Option)}
    for field in dataclasses.fields(DetectConfig):
        if field.name in defaults and field.name != "actions":
            assert defaults[field.name] == field.default, field.name


def test_ray_actors_and_detect_build_the_same_pipeline(tmp_path, checkpoint):
    pytest.importorskip("pyarrow")
    from stclip_cli.corpus.engine import VideoWorker

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": 0, "bbox": [1, 1, 20, 20], "score": 0.9}]))
    for change in ({}, {"int8": True}, {"half": True}):
        config = DetectConfig(("clap", "wave"), model="tiny-test", checkpoint=str(checkpoint), boxes=str(boxes),
                              device="cpu", **change)
        assembly = assemble(config)
        local = build_pipeline(assembly)
        actor = VideoWorker(assembly, attempts=None, threads=1)
        assert actor.setup_error == ""
        assert actor.pipeline.info == local.info
        assert actor.pipeline.predictor.options == local.predictor.options
        assert local.info.precision == ("int8" if change.get("int8") else "fp32")  # bf16 only on a GPU


def test_stamp_ignores_speed_and_follows_results(tmp_path, checkpoint):
    config = DetectConfig(("clap",), model="tiny-test", checkpoint=str(checkpoint), device="cpu",
                          detector="yolo11n.yaml")  # an architecture: no weights to fetch offline
    assembly = assemble(config)
    assert isinstance(assembly, Assembly) and assembly.boxes is None and assembly.note is None

    def stamp(**change) -> dict:
        return dataclasses.replace(assembly, config=dataclasses.replace(config, **change)).stamp()

    assert stamp(batch_size=16) == assembly.stamp()
    for change in ({"stride": 2}, {"actions": ("wave",)}, {"half": True}, {"person_conf": 0.5}):
        assert stamp(**change) != assembly.stamp(), change


def test_eval_scores_what_detect_ships(tmp_path, checkpoint, monkeypatch):
    """`stclip eval --gt-boxes` and `stclip detect` on the same frames with the same boxes give the same scores: eval
    is a detect run (one source, one predictor, one scorer), not a second pipeline."""
    from typer.testing import CliRunner

    import stclip_cli.benchmark.evaluate as evaluate
    from stclip_cli.data import open_dataset
    from synthetic import make_jhmdb

    root = make_jhmdb(tmp_path / "jhmdb", videos_per_class=2, frames=6, classes=["clap", "sit"])
    rows: list = []
    real = evaluate.frame_ap
    monkeypatch.setattr(evaluate, "frame_ap", lambda dets, gt, classes: (rows.extend(dets), real(dets, gt, classes))[1])
    result = CliRunner().invoke(app, ["eval", "--dataset", "jhmdb", "--split", "1", "--data-root", str(root), "--model",
                                      "tiny-test", "--checkpoint", str(checkpoint), "--device", "cpu", "--quiet",
                                      "--gt-boxes", "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    view = open_dataset("jhmdb", root, 1, "test")
    video = view.videos[0]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"frames": [{"index": f, "persons": [{"box": [float(v) for v in entry.boxes[0]]}]}
                                            for f, entry in sorted(video.gt.items())]}))
    shipped = CliRunner().invoke(app, ["detect", str(video.frame_paths[0].parent), "--actions", ",".join(view.classes), "--model",
                                       "tiny-test", "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--device",
                                       "cpu", "--quiet", "--json", str(tmp_path / "detect.json")])
    assert shipped.exit_code == 0, shipped.output
    detected = {(f["index"], name): score for f in json.loads((tmp_path / "detect.json").read_text())["frames"]
                for p in f["persons"] for name, score in p["scores"].items()}
    evaluated = {(frame, name): score for (name_of_video, frame), name, score, _ in rows if name_of_video == video.name}
    assert set(evaluated) == set(detected) and len(evaluated) == len(view.classes) * len(video.gt)
    for key, score in evaluated.items():
        assert score == pytest.approx(detected[key], abs=1e-4), key  # the JSON rounds to 4 decimals


def test_a_long_stride_embeds_only_frames_its_windows_read(tmp_path, checkpoint, make_video, monkeypatch):
    """At --stride 20 with T = 9, frames 9..11 and 29..31 are in no window: not preprocessed nor embedded (they were,
    every frame, before), and the scores are those of a run that embeds every frame."""
    from stclip_cli.core.scoring import Scorer
    from stclip_cli.core.windows import EveryNth

    video = make_video(tmp_path, n_frames=41)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [4, 4, 30, 40], "score": 0.9} for f in range(41)]))
    config = DetectConfig(("clap", "wave"), model="tiny-test", checkpoint=str(checkpoint), boxes=str(boxes),
                          device="cpu", stride=20)
    pipeline = build_pipeline(assemble(config))
    embedded: list[int] = []
    ingest = Scorer.ingest
    monkeypatch.setattr(Scorer, "ingest", lambda self, index, image: (embedded.append(index), ingest(self, index, image)))

    def scores() -> list:
        from stclip_cli.records import SCORES, Sink

        results = []

        class Keep(Sink):
            def open(self, info, actions, model):
                pass

            def close(self):
                pass

            def abort(self):
                pass

            def write(self, result):
                if result.keyframe:
                    results.append(result.detections.data[SCORES].copy())

        pipeline.predictor.run(video, [Keep()], pipeline.info)
        return results

    sparse = scores()
    assert sorted(embedded) == [f for f in range(41) if f not in (9, 10, 11, 29, 30, 31)]
    monkeypatch.setattr(EveryNth, "near", lambda self, index, reach: True)
    embedded.clear()
    full = scores()
    assert sorted(embedded) == list(range(41))
    assert len(sparse) == 3 and all(np.array_equal(a, b) for a, b in zip(sparse, full))
