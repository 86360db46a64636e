"""Detector checkpoints are read by torch's restricted unpickler: real ultralytics files load, crafted ones run nothing."""

from __future__ import annotations

import collections
import io
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch

from stclip_cli.core.detection import YoloPersonDetector
from stclip_cli.errors import StclipError


@pytest.fixture(scope="module")
def yolo():
    """A randomly initialised YOLO11n built from ultralytics' own architecture file (no download)."""
    from ultralytics import YOLO

    return YOLO("yolo11n.yaml")


@pytest.fixture(scope="module")
def checkpoints(yolo, tmp_path_factory) -> dict[str, Path]:
    """The files ultralytics writes: ``model.save()``, a trainer's last.pt, the stripped best.pt, a fused model."""
    from ultralytics import __version__
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.torch_utils import ModelEMA, convert_optimizer_state_dict_to_fp16, strip_optimizer

    folder = tmp_path_factory.mktemp("yolo")
    files = {name: folder / f"{name}.pt" for name in ("saved", "last", "best", "fused")}
    yolo.save(files["saved"])
    # the dict BaseTrainer.save_model writes: EMA model carrying its training args, optimizer state, numpy metrics
    model = deepcopy(yolo.model)
    model.args = get_cfg(DEFAULT_CFG, {"model": "yolo11n.yaml", "data": "coco8.yaml"})
    ema = ModelEMA(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    buffer = io.BytesIO()
    torch.save({
        "epoch": 0, "best_fitness": np.float64(0.1), "model": None, "ema": deepcopy(ema.ema).half(),
        "updates": ema.updates, "optimizer": convert_optimizer_state_dict_to_fp16(deepcopy(optimizer.state_dict())),
        "train_args": vars(model.args), "train_metrics": {"metrics/mAP50(B)": np.float64(0.2)},
        "date": "2025-01-01T00:00:00", "version": __version__,
    }, buffer)
    files["last"].write_bytes(buffer.getvalue())
    strip_optimizer(files["last"], files["best"])  # what ultralytics ships: best.pt after training
    fused = deepcopy(yolo)
    fused.model.fuse()  # fused convs pickle their bound forward_fuse through builtins.getattr
    fused.save(files["fused"])
    return files


@pytest.mark.parametrize("name", ["saved", "last", "best", "fused"])
def test_real_ultralytics_checkpoints_load_and_detect(checkpoints, name, make_frame):
    detector = YoloPersonDetector(str(checkpoints[name]), conf=0.001, device="cpu", imgsz=160)
    assert detector.model.task == "detect" and detector.person_class == 0
    results = detector.detect([make_frame(0), make_frame(3)])
    assert len(results) == 2 and all(d.xyxy.dtype == np.float32 for d in results)


class RunsCode:
    """Unpickling this runs ``exec``: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_crafted_checkpoint_runs_nothing_and_is_refused_in_one_line(tmp_path, yolo):
    marker = tmp_path / "marker"
    crafted = tmp_path / "yolo.pt"
    torch.save({"model": yolo.model, "payload": RunsCode(marker)}, crafted)
    with pytest.raises(StclipError) as err:
        YoloPersonDetector(str(crafted))
    assert not marker.exists()
    assert str(err.value) == (
        f"{crafted}: refusing to load: it needs builtins.exec, which is not an ultralytics model class "
        "(only ultralytics and torch.nn model classes are rebuilt from a detector checkpoint, "
        "so that loading it cannot run code)"
    )
    torch.load(crafted, weights_only=False)  # the file is armed: an unrestricted load (ultralytics' own) runs it
    assert marker.exists()


class CallsModelConstructor:
    """Unpickles as ``DetectionModel(cfg)``, whose constructor evaluates ``cfg["activation"]`` as Python."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        from ultralytics.nn.tasks import DetectionModel

        cfg = {"nc": 1, "activation": f"open({str(self.marker)!r}, 'w').close() or nn.SiLU()",
               "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[-1, 1, "Detect", ["nc"]]]}
        return (DetectionModel, (cfg,))


def test_allowed_model_classes_are_never_constructed_by_the_unpickler(tmp_path):
    marker = tmp_path / "marker"
    crafted = tmp_path / "ctor.pt"
    torch.save({"model": CallsModelConstructor(marker)}, crafted)
    with pytest.raises(StclipError) as err:
        YoloPersonDetector(str(crafted))
    assert not marker.exists()
    assert str(err.value) == f"cannot load person detector '{crafted}': the file holds no ultralytics model"
    from ultralytics.nn.tasks import DetectionModel

    with torch.serialization.safe_globals([DetectionModel]), pytest.raises(Exception):
        torch.load(crafted, weights_only=True)  # a plain allow-list of the class lets the file call it
    assert marker.exists()


class ReadsAttribute:
    """Unpickles as ``getattr(<a path>, "touch")``: an allowed name (getattr) used on something that is no model."""

    def __reduce__(self):
        return (getattr, (Path("x"), "touch"))


def test_getattr_is_limited_to_model_methods(tmp_path):
    crafted = tmp_path / "getattr.pt"
    torch.save({"model": ReadsAttribute()}, crafted)
    with pytest.raises(StclipError) as err:
        YoloPersonDetector(str(crafted))
    assert "refusing getattr(PosixPath, 'touch')" in str(err.value) and "\n" not in str(err.value)


def test_data_that_trips_the_restricted_unpickler_is_an_error(tmp_path):
    class Trips:
        def __reduce__(self):
            return (collections.OrderedDict, (), (None, {"x": 1}))

    crafted = tmp_path / "trips.pt"
    torch.save({"model": Trips()}, crafted)
    with pytest.raises(StclipError) as err:
        YoloPersonDetector(str(crafted))
    assert str(err.value).startswith(f"cannot load person detector '{crafted}': ")


def test_yaml_architecture_whose_activation_is_code_is_refused(tmp_path):
    from ultralytics.utils import ROOT

    marker = tmp_path / "marker"
    text = (ROOT / "cfg" / "models" / "11" / "yolo11.yaml").read_text()
    evil = tmp_path / "evil11n.yaml"
    evil.write_text(text + f"\nactivation: open({str(marker)!r}, 'w').close() or nn.SiLU()\n")
    with pytest.raises(StclipError) as err:
        YoloPersonDetector(str(evil))
    assert not marker.exists()
    assert str(err.value).startswith(f"{evil}: refusing to build: its activation ")
    plain = tmp_path / "plain11n.yaml"
    plain.write_text(text + "\nactivation: nn.LeakyReLU(0.1)\n")
    assert YoloPersonDetector(str(plain), device="cpu").model.task == "detect"


@pytest.mark.parametrize("asked, built", [("yolov8n.yaml", "yolov8.yaml"), ("yolov8n6.yaml", "yolov8n-p6.yaml")])
def test_yaml_that_ultralytics_resolves_to_another_file_is_checked_too(tmp_path, asked, built):
    """ultralytics builds yolov8n.yaml from yolov8.yaml when the first is missing, and yolov8n6 from yolov8n-p6:
    only the named file was checked, so the file actually built ran its code."""
    from ultralytics.utils import ROOT

    marker = tmp_path / "marker"
    text = (ROOT / "cfg" / "models" / "v8" / "yolov8.yaml").read_text()
    (tmp_path / built).write_text(text + f"\nactivation: open({str(marker)!r}, 'w').close() or nn.SiLU()\n")
    if asked == "yolov8n6.yaml":
        (tmp_path / asked).write_text(text)  # harmless, and never read
    with pytest.raises(StclipError, match="refusing to build: its activation"):
        YoloPersonDetector(str(tmp_path / asked))
    assert not marker.exists()


def test_other_detector_formats_are_refused(tmp_path):
    exported = tmp_path / "det.torchscript"
    exported.write_bytes(b"x")
    with pytest.raises(StclipError) as err:
        YoloPersonDetector(str(exported))
    assert str(err.value) == f"person detector '{exported}': expected an ultralytics .pt checkpoint or a .yaml architecture"
