"""Dataset readers for the zero-shot benchmarks (J-HMDB, UCF101-24, AVA) behind one ``open_dataset`` call.

Data roots: ``--data-root DIR`` wins; otherwise ``$STCLIP_DATA/<name>`` when STCLIP_DATA is set, else
``~/.cache/stclip/data/<name>``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from stclip_cli.data.ava import open_ava
from stclip_cli.data.common import DatasetView
from stclip_cli.data.jhmdb import open_jhmdb
from stclip_cli.data.ucf24 import open_ucf24
from stclip_cli.errors import StclipError

READERS = {"jhmdb": open_jhmdb, "ucf24": open_ucf24, "ava": open_ava}


def default_data_root(name: str) -> Path:
    """``$STCLIP_DATA/<name>`` if STCLIP_DATA is set, else ``~/.cache/stclip/data/<name>``."""
    base = os.environ.get("STCLIP_DATA")
    return (Path(base) if base else Path.home() / ".cache" / "stclip" / "data") / name


def pool_option(dataset: str, pool: str | None) -> dict[str, Any]:
    """The reader option ``--pool`` gives: J-HMDB and UCF101-24 videos (default ``official``, the reference's halves);
    AVA has none (its split fixes the videos), so a ``--pool`` there is an error, not a silent no-op."""
    key = dataset.lower()
    if key in ("jhmdb", "ucf24"):
        return {"pool": pool or "official"}
    if pool is not None:
        raise StclipError(f"--pool chooses J-HMDB or UCF101-24 videos; {key}'s videos are fixed by its split")
    return {}


def open_dataset(name: str, root: Path | str | None, split: int, subset: str, **options: Any) -> DatasetView:
    """Open ``subset`` (train/test) of label ``split`` of dataset ``name``; ``options`` go to its reader.

    jhmdb: anno, pkl, detections, pool ("official"/"all"); ucf24: pkl, pool; ava: proposals, frame_step.
    """
    key = name.lower()
    if key not in READERS:
        raise StclipError(f"unknown dataset {name!r}: expected one of {', '.join(READERS)}")
    reader = READERS[key]
    unknown = sorted(set(options) - set(inspect.signature(reader).parameters))
    if unknown:
        raise StclipError(f"option(s) {', '.join(unknown)} not supported for {key}")
    path = Path(root).expanduser() if root is not None else default_data_root(key)
    if not path.is_dir():
        raise StclipError(f"{key} data root not found: {path} (pass --data-root DIR or set STCLIP_DATA)")
    return reader(path, split, subset, **options)
