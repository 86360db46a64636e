"""Every scored (person, action) of a video as one row of a Parquet file: the corpus engine's table for analytics in
pandas, polars or DuckDB. A sink like the others (outputs.py): written through a ``Destination``, so a file appears
under its name only when complete.

Columns: video, frame, time (s), person (its position in the frame's "persons" list of the JSON), track_id (null when
untracked), x1, y1, x2, y2 (pixels of the original video), detector_score (null without one), action, score, model.
Values are those of the JSON before its rounding. The file's key-value metadata ``stclip`` holds the JSON ``stamp``
the engine gives it (what produced the rows), which a re-run compares to decide whether the video is done.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stclip_cli.sinks.destinations import FileSink, Target
from stclip_cli.records import SCORES, FrameResult, ModelInfo, VideoInfo

SCHEMA = pa.schema([
    ("video", pa.string()),
    ("frame", pa.int64()),
    ("time", pa.float64()),
    ("person", pa.int64()),
    ("track_id", pa.int64()),  # local mode takes any track id a boxes file gives; Arrow must too
    ("x1", pa.float32()),
    ("y1", pa.float32()),
    ("x2", pa.float32()),
    ("y2", pa.float32()),
    ("detector_score", pa.float32()),
    ("action", pa.string()),
    ("score", pa.float32()),
    ("model", pa.string()),
])
STAMP_KEY = b"stclip"
ROWS_PER_GROUP = 1 << 16  # rows buffered before a row group is written: memory stays flat on long videos


class RowsSink(FileSink):
    """One video's rows, keyframes only (carried frames repeat their keyframe's scores), zstd-compressed Parquet."""

    def __init__(self, target: Target | str | Path, video: str | None = None, stamp: Mapping[str, Any] | None = None) -> None:
        """``video``: the name the rows give the video (default: the path it is decoded from); ``stamp``: stored in
        the file's metadata."""
        super().__init__(target)
        self.video = video
        self.stamp = dict(stamp or {})
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any]) -> None:
        """Start the temporary Parquet file."""
        self.actions = list(actions)
        self._name = self.video or str(info.path)
        self._model = model.name if isinstance(model, ModelInfo) else str(model["name"])
        schema = SCHEMA.with_metadata({STAMP_KEY: json.dumps(self.stamp, sort_keys=True).encode()})
        with self.destination.guard():
            where: Any = (str(self.destination.temp_path()) if self.destination.target.seekable
                          else self.destination.open(text=False))  # Parquet is written front to back: a FIFO works
            self._writer = pq.ParquetWriter(where, schema, compression="zstd")
        self.rows = 0

    def write(self, result: FrameResult) -> None:
        """Add a keyframe's rows: one per person and action."""
        if not result.keyframe or len(result.detections) == 0:
            return
        self._pending.append(frame_rows(result, self.actions, self._name, self._model))
        self._pending_rows += self._pending[-1].num_rows
        if self._pending_rows >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        assert self._writer is not None, "RowsSink.open() first"
        if self._pending:
            with self.destination.guard():
                self._writer.write_table(pa.Table.from_batches(self._pending, SCHEMA))
            self.rows += self._pending_rows
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        """Write the last rows and the footer, then put the file in place."""
        if self._writer is not None:
            self._flush()
            writer, self._writer = self._writer, None
            with self.destination.guard():
                writer.close()
        self.destination.commit()

    def abort(self) -> None:
        """Drop the temporary file; nothing appears under the final name."""
        self._pending, self._pending_rows = [], 0
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except OSError:
                pass  # already failing; the temporary file goes next
        self.destination.discard()


EVENT_SCHEMA = pa.schema([
    ("video", pa.string()), ("track_id", pa.int64()), ("action", pa.string()), ("start", pa.float64()),
    ("end", pa.float64()), ("start_frame", pa.int64()), ("end_frame", pa.int64()), ("peak_score", pa.float32()),
    ("peak_time", pa.float64()), ("peak_frame", pa.int64()), ("mean_score", pa.float32()), ("x1", pa.float32()),
    ("y1", pa.float32()), ("x2", pa.float32()), ("y2", pa.float32()),
])


class EventRowsSink(FileSink):
    """The Ray engine's events table of one video (``<parquet>/_events/<video>.parquet``): the events of the events
    sink it is given, written when the video ends (that sink closes first)."""

    def __init__(self, target: Target | str | Path, events: Any, stamp: Mapping[str, Any] | None = None) -> None:
        super().__init__(target)
        self.events_from = events
        self.stamp = dict(stamp or {})

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any]) -> None:
        """Nothing to start: the table is written at the end."""

    def write(self, result: FrameResult) -> None:
        """Events come from the events sink, not from frames."""

    def close(self) -> None:
        """Write the table and put it in place."""
        events = [e.to_dict() for e in self.events_from.events]
        columns = {name: [e.get(name) for e in events] for name in EVENT_SCHEMA.names if name not in ("x1", "y1", "x2", "y2")}
        for k, name in enumerate(("x1", "y1", "x2", "y2")):
            columns[name] = [e["box"][k] for e in events]
        table = pa.table(columns, schema=EVENT_SCHEMA).replace_schema_metadata(
            {STAMP_KEY: json.dumps(self.stamp, sort_keys=True).encode()})
        with self.destination.guard():
            where: Any = (str(self.destination.temp_path()) if self.destination.target.seekable
                          else self.destination.open(text=False))
            pq.write_table(table, where, compression="zstd")
        self.destination.commit()

    def abort(self) -> None:
        """Nothing appears under the final name."""
        self.destination.discard()


def frame_rows(result: FrameResult, actions: list[str], video: str, model: str) -> pa.RecordBatch:
    """The rows of one frame: person-major, actions in the run's order."""
    det = result.detections
    n, c = len(det), len(actions)
    scores = np.asarray(det.data[SCORES], dtype=np.float32).reshape(n, c)
    boxes = np.asarray(det.xyxy, dtype=np.float32).reshape(n, 4)
    tracks = None
    if det.tracker_id is not None:
        ids = np.asarray(det.tracker_id).astype(np.int64)
        tracks = pa.array(np.repeat(ids, c), pa.int64(), mask=np.repeat(ids < 0, c))
    confidence = None
    if det.confidence is not None:
        conf = np.asarray(det.confidence, dtype=np.float32)
        confidence = pa.array(np.repeat(conf, c), pa.float32(), mask=np.repeat(~np.isfinite(conf), c))
    columns = [
        pa.array([video] * (n * c), pa.string()),
        pa.array(np.full(n * c, result.index, np.int64)),
        pa.array(np.full(n * c, float(result.time))),
        pa.array(np.repeat(np.arange(n, dtype=np.int64), c)),
        tracks if tracks is not None else pa.nulls(n * c, pa.int64()),
        *(pa.array(np.repeat(boxes[:, k], c)) for k in range(4)),
        confidence if confidence is not None else pa.nulls(n * c, pa.float32()),
        pa.array(actions * n, pa.string()),
        pa.array(scores.reshape(-1)),
        pa.array([model] * (n * c), pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def read_stamp(path: str | Path) -> dict[str, Any] | None:
    """The stamp stored in a rows file's footer (the footer only is read); None when absent or unreadable."""
    try:
        meta = pq.read_metadata(str(path)).metadata or {}
        return json.loads(meta[STAMP_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None


__all__ = ["ROWS_PER_GROUP", "RowsSink", "SCHEMA", "frame_rows", "read_stamp"]
