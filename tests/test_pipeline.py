"""One assembly: ``DetectConfig`` holds detect's defaults and checks, and ``build_pipeline`` is the one builder that
single-process detect and the Ray actors use (the same model record, whatever the engine)."""

from __future__ import annotations

import dataclasses
import json
import math

import click
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
    from stclip_cli.corpus import VideoWorker

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
    config = DetectConfig(("clap",), model="tiny-test", checkpoint=str(checkpoint), device="cpu")
    assembly = assemble(config)
    assert isinstance(assembly, Assembly) and assembly.boxes is None and assembly.note is None

    def stamp(**change) -> dict:
        return dataclasses.replace(assembly, config=dataclasses.replace(config, **change)).stamp()

    assert stamp(batch_size=16) == assembly.stamp()
    for change in ({"stride": 2}, {"actions": ("wave",)}, {"half": True}, {"person_conf": 0.5}):
        assert stamp(**change) != assembly.stamp(), change
