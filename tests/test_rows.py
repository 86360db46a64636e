"""The Parquet rows sink: one row per person and action of every keyframe, nulls where the JSON has nulls, the stamp
in the footer, and nothing under the final name unless complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import supervision as sv

from stclip_cli.sinks import rows as rows_module
from stclip_cli.sinks.outputs import JsonSink
from stclip_cli.records import SCORES, FrameResult, ModelInfo, VideoInfo
from stclip_cli.sinks.rows import SCHEMA, RowsSink, read_stamp

ACTIONS = ["clap", "wave", "sit"]
MODEL = ModelInfo("tiny-test", "stclip-tiny-test", None, "softmax")
INFO = VideoInfo(Path("cams/clip.mp4"), 96, 64, 10.0, 3, 0)


def frame(index: int, tracks=None, confidence=None, n: int = 2) -> FrameResult:
    det = sv.Detections(xyxy=np.array([[1.5, 2, 30, 40], [50, 10, 90, 60]], np.float32)[:n],
                        confidence=None if confidence is None else np.array(confidence, np.float32),
                        tracker_id=None if tracks is None else np.array(tracks))
    det.data[SCORES] = np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 10
    return FrameResult(index, index / 10, det)


def test_rows_match_the_json(tmp_path):
    results = [frame(0, tracks=[4, -1], confidence=[0.9, np.nan]), frame(1, n=0),
               FrameResult(2, 0.2, frame(0).detections, keyframe=False), frame(3)]
    sink, json_sink = RowsSink(tmp_path / "clip.parquet", stamp={"run": 1}), JsonSink(tmp_path / "clip.json")
    for s in (sink, json_sink):
        s.open(INFO, ACTIONS, MODEL)
        for result in results:
            s.write(result)
        s.close()
    table = pq.read_table(tmp_path / "clip.parquet")
    assert table.schema.remove_metadata() == SCHEMA and table.num_rows == sink.rows == 2 * 2 * 3
    data = json.loads((tmp_path / "clip.json").read_text())
    expected = [(data["video"], f["index"], f["time"], k, p["track_id"], *p["box"], p["detector_score"], a, s, "tiny-test")
                for f in data["frames"] for k, p in enumerate(f["persons"]) for a, s in p["scores"].items()]
    got = [tuple(row.values()) for row in table.to_pylist()]
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        assert row[:5] == want[:5] and row[10] == want[10] and row[12] == want[12]
        assert row[5:9] == pytest.approx(want[5:9], abs=0.01) and row[11] == pytest.approx(want[11], abs=1e-5)
        assert (row[9] is None) == (want[9] is None) and (row[9] is None or row[9] == pytest.approx(want[9], abs=1e-4))
    assert read_stamp(tmp_path / "clip.parquet") == {"run": 1}


def test_large_videos_are_written_in_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(rows_module, "ROWS_PER_GROUP", 12)
    sink = RowsSink(tmp_path / "clip.parquet", video="s3://bucket/clip.mp4")
    sink.open(INFO, ACTIONS, MODEL)
    for i in range(5):
        sink.write(frame(i))
    sink.close()
    meta = pq.read_metadata(tmp_path / "clip.parquet")
    assert meta.num_rows == 30 and meta.num_row_groups == 3
    assert set(pq.read_table(tmp_path / "clip.parquet").column("video").to_pylist()) == {"s3://bucket/clip.mp4"}


def test_aborted_rows_leave_nothing(tmp_path):
    sink = RowsSink(tmp_path / "clip.parquet")
    sink.open(INFO, ACTIONS, MODEL)
    sink.write(frame(0))
    sink.abort()
    assert list(tmp_path.iterdir()) == []
    assert read_stamp(tmp_path / "clip.parquet") is None
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert read_stamp(tmp_path / "bad.parquet") is None
