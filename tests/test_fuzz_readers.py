"""Fuzz tests of the readers of user files: random JSON and mutations of valid files must give success or one
``StclipError``, never another exception. Deterministic (``derandomize``), so CI sees the same cases every run.

Examples per test (``max_examples``): boxes/result JSON 300, eval ground truth 300, prediction JSON 200, AVA CSV 300.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stclip_cli.benchmark.metrics import read_detect_json, read_ground_truth_file
from stclip_cli.core.detection import BoxesFile
from stclip_cli.data.ava import read_ava_csv
from stclip_cli.errors import StclipError
from stclip_cli.sinks.timeline import read_result

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=20)
DETECT = {"video": "v.mp4", "width": 80, "height": 60, "fps": 10.0, "num_frames": 3, "actions": ["clap", "sit"],
          "model": {"name": "m"}, "frames": [{"index": i, "time": i / 10, "persons": [
              {"box": [1.0, 2.0, 30.0, 40.0], "detector_score": 0.9, "track_id": 1, "scores": {"clap": 0.7, "sit": 0.3},
               "labels": ["clap"]}]} for i in range(3)]}
COCO_GT = {"images": [{"id": 1, "movie": "v", "timestamp": "00001", "width": 80, "height": 60}],
           "annotations": [{"image_id": 1, "bbox": [10, 10, 40, 50], "action_ids": [3]}]}
KEYS = ["video", "frames", "index", "time", "persons", "box", "scores", "detector_score", "track_id", "labels",
        "actions", "images", "annotations", "image_id", "bbox", "action_ids", "timestamp", "movie", "id", "score"]


def mutated(base: dict) -> st.SearchStrategy:
    """A valid document with one value somewhere replaced by random JSON (or a key dropped)."""

    def paths(value, prefix=()):
        yield prefix
        if isinstance(value, dict):
            for k, v in value.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from paths(v, prefix + (i,))

    every = [p for p in paths(base) if p]

    def apply(choice):
        where, replacement, drop = choice
        doc = json.loads(json.dumps(base))
        node = doc
        for key in where[:-1]:
            node = node[key]
        if drop and isinstance(node, dict):
            node.pop(where[-1], None)
        else:
            node[where[-1]] = replacement
        return doc

    return st.tuples(st.sampled_from(every), JSON, st.booleans()).map(apply)


def written(text: str, suffix: str = ".json") -> Path:
    folder = Path(tempfile.mkdtemp(prefix="stclip-fuzz-"))
    path = folder / f"file{suffix}"
    path.write_text(text)
    return path


def survives(read, text: str, suffix: str = ".json") -> None:
    """``read(path)`` succeeds or raises StclipError; anything else fails the test."""
    path = written(text, suffix)
    try:
        read(path)
    except StclipError:
        pass
    finally:
        path.unlink()
        path.parent.rmdir()


@SETTINGS
@given(st.one_of(JSON, mutated(DETECT), st.lists(st.fixed_dictionaries(
    {"image_id": SCALARS, "bbox": JSON, "score": SCALARS}), max_size=3)))
def test_boxes_and_result_readers(data):
    text = json.dumps(data)
    survives(lambda p: BoxesFile(p), text)
    survives(lambda p: BoxesFile(p, "xyxy"), text)
    survives(read_result, text)


@SETTINGS
@given(st.one_of(JSON, mutated(COCO_GT), mutated(DETECT)))
def test_eval_ground_truth_reader(data):
    survives(read_ground_truth_file, json.dumps(data))


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, mutated(DETECT), st.lists(mutated(DETECT), max_size=2)))
def test_prediction_reader(data):
    survives(read_detect_json, json.dumps(data))


ROW = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(["v", "0902", "0.1", "0.5", "nan", "inf", "1", "-3", "²",
                                                               "1e400", "", "video_id"])), min_size=0, max_size=9)


@SETTINGS
@given(st.lists(ROW, max_size=4), st.booleans())
def test_ava_csv_reader(rows, with_action):
    text = "\n".join(",".join(f'"{c}"' if "," in c or '"' in c or "\n" in c else c for c in row) for row in rows)
    survives(lambda p: read_ava_csv(p, with_action), text, ".csv")
