"""Which videos a corpus run reads, and how a worker gets a local file for each.

Inputs are folders (searched recursively), glob patterns, manifest files (``@list.txt``: one path or URI per line)
and single files; each is a local path or a URI that ``pyarrow.fs.FileSystem.from_uri`` opens (``s3://``, ``gs://``,
``hdfs://``, ``abfs://`` ... wherever the user has that store configured). Folders and globs select files with a
video extension (``inputs.VIDEO_SUFFIXES``) and skip hidden ones; a file named explicitly or in a manifest is read
whatever its name. A remote video is copied to a local temporary file for decoding, deleted afterwards: PyAV seeks
inside MP4s and stclip reads a file more than once (counting frames, a second pass for ``--single-action --video``).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stclip_cli.errors import StclipError, first_line
from stclip_cli.sources.inputs import VIDEO_SUFFIXES

GLOB_CHARS = re.compile(r"[*?\[]")
if TYPE_CHECKING:  # pyarrow (0.1 s) loads where a filesystem is listed, not for a plain file argument
    import pyarrow.fs as pafs

URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")


@dataclass(frozen=True)
class VideoRef:
    """One video of the corpus: ``name`` is what outputs call it (a local path as the user spelled it, or a URI),
    ``size`` and ``mtime_ns`` what its filesystem says about it (None where a store does not say)."""

    name: str
    size: int | None = None
    mtime_ns: int | None = None

    @property
    def remote(self) -> bool:
        """Whether a worker must fetch it through a pyarrow filesystem."""
        return URI.match(self.name) is not None

    @property
    def path(self) -> Path:
        """The path output planning sees: names come from its last parts (a URI's ``//`` folds, which is harmless)."""
        return Path(self.name)


@dataclass(frozen=True)
class Missing:
    """A manifest entry that names no readable video file; it goes to the failures table."""

    name: str
    error: str


def find_videos(specs: Sequence[str], exclude: Sequence[Path] = ()) -> tuple[list[VideoRef], list[Missing]]:
    """Every video the specs name, in order, each once; ``exclude``: folders never searched (the run's outputs).

    A folder, glob or file that yields nothing is an error (the command line is wrong; nothing has run yet); a
    manifest entry that is missing is a ``Missing`` (a manifest is data: the rest of it still runs).
    """
    stores = _Stores()
    skip = [os.path.realpath(p) for p in exclude]
    found: dict[str, VideoRef] = {}
    missing: list[Missing] = []
    for spec in map(_local_uri, specs):
        if spec.startswith("@"):
            refs, gone = _manifest(_local_uri(spec[1:]), stores)
            missing += gone
        else:
            refs = _expand(spec, stores, skip)
            if not refs:
                what = "videos matching" if GLOB_CHARS.search(spec) else "videos in"
                raise StclipError(f"no {what} {spec} (video files end with {', '.join(sorted(VIDEO_SUFFIXES))})")
        for ref in refs:
            found.setdefault(ref.name if ref.remote else os.path.realpath(ref.name), ref)
    return list(found.values()), missing


def expand_inputs(specs: list[str], outputs: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Folders of videos, globs and ``@manifests`` become their videos, found as the Ray engine finds them (never
    inside an output folder); a folder holding images is a frame folder, a stream or a file stays as it is. Returns
    the inputs and the manifest entries that name no video."""
    from stclip_cli.sinks.destinations import is_folder_spec
    from stclip_cli.sources.inputs import is_stream

    out: list[str] = []
    absent: list[tuple[str, str]] = []
    for spec in specs:
        if is_stream(spec) or not is_collection(spec):
            out.append(spec)
            continue
        written = [Path(v) for v in outputs.values() if v not in (None, "", "-") and is_folder_spec(v)]
        refs, missing = find_videos([spec], exclude=written)
        out += [ref.name for ref in refs]
        absent += [(m.name, m.error) for m in missing]
    return out, absent


def is_collection(spec: str) -> bool:
    """A manifest, a glob that names no file itself, or a folder without images (a frame folder has them)."""
    import os

    if spec.startswith("@") or (GLOB_CHARS.search(spec) and not os.path.exists(spec)):
        return True
    if not os.path.isdir(spec):
        return False
    from stclip_cli.sources.video import IMAGE_SUFFIXES

    return not any(entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
                   for entry in os.scandir(spec))


@dataclass(frozen=True)
class _Store:
    """A filesystem and how its paths relate to names: ``name = prefix + path`` (``prefix`` None for a local disk,
    whose names are paths as the user spelled them)."""

    fs: pafs.FileSystem
    prefix: str | None

    def path(self, name: str) -> str:
        """The path inside the filesystem of a name of this store."""
        if self.prefix is None:
            return os.path.abspath(name)
        return name[len(self.prefix):].split("?", 1)[0]


class _Stores:
    """Filesystems opened once per scheme and authority (opening an S3 bucket asks the network for its region)."""

    def __init__(self) -> None:
        self._open: dict[str, _Store] = {}

    def __call__(self, name: str) -> _Store:
        import pyarrow.fs as pafs
        match = URI.match(name)
        if not match:
            return _Store(pafs.LocalFileSystem(), None)
        key = name[: match.end()] + name[match.end():].split("/", 1)[0]
        if key not in self._open:
            self._open[key] = open_store(name)
        return self._open[key]


def open_store(uri: str) -> _Store:
    """Open the filesystem of a URI with ``pyarrow.fs.FileSystem.from_uri``; a one-line error when it cannot be."""
    import pyarrow.fs as pafs
    head = uri[: m.start()] if (m := GLOB_CHARS.search(uri)) else uri
    try:
        fs, path = pafs.FileSystem.from_uri(head)
    except (OSError, ValueError, ImportError) as err:  # unknown scheme, a store not built in, no credentials
        raise StclipError(f"cannot open {uri}: {first_line(err)}") from None
    base, path = head.split("?", 1)[0].rstrip("/"), path.rstrip("/")
    if not base.endswith(path):
        raise StclipError(f"cannot open {uri}: its path in the store ({path}) does not end the URI, as it does for "
                          "s3://, gs:// and hdfs:// URIs")
    return _Store(fs, base[: len(base) - len(path)])


def _expand(spec: str, stores: _Stores, skip: Sequence[str]) -> list[VideoRef]:
    """A folder's videos, a glob's videos, or the one file named."""
    import pyarrow.fs as pafs
    store = stores(spec)
    if GLOB_CHARS.search(spec):
        return _glob(spec, store, skip)
    info = _info(store, spec)
    if info.type == pafs.FileType.NotFound:
        raise StclipError(f"video not found: {spec}")
    if info.type == pafs.FileType.Directory:
        return _walk(spec, store, skip)
    return [VideoRef(spec, info.size, info.mtime_ns)]


def _walk(spec: str, store: _Store, skip: Sequence[str]) -> list[VideoRef]:
    """The videos under a folder, sorted, named as the folder was spelled plus their path inside it."""
    import pyarrow.fs as pafs
    root = store.path(spec).rstrip("/")
    infos = _listing(store, root, spec)
    refs = []
    for info in infos:
        inside = info.path[len(root):].lstrip("/")
        if info.type == pafs.FileType.File and _is_video(inside) and not _excluded(info.path, store, skip):
            refs.append(VideoRef(f"{spec.rstrip('/')}/{inside}", info.size, info.mtime_ns))
    return refs


def _glob(spec: str, store: _Store, skip: Sequence[str]) -> list[VideoRef]:
    """Local patterns with Python's glob (``**`` crosses folders); in an object store, the listing under the
    pattern's fixed part filtered with ``fnmatch`` (there ``*`` also matches across ``/``)."""
    import pyarrow.fs as pafs
    if store.prefix is None:
        names = sorted(glob.glob(spec, recursive=True))
        pairs = list(zip(names, store.fs.get_file_info([store.path(n) for n in names]))) if names else []
    else:
        pattern = store.path(spec)
        fixed = pattern[: GLOB_CHARS.search(pattern).start()].rsplit("/", 1)[0]
        pairs = [(store.prefix + i.path, i) for i in _listing(store, fixed, spec) if fnmatch.fnmatchcase(i.path, pattern)]
    return [VideoRef(name, info.size, info.mtime_ns) for name, info in pairs
            if info.type == pafs.FileType.File and _is_video(name) and not _excluded(info.path, store, skip)]


def _listing(store: _Store, root: str, spec: str) -> list[pafs.FileInfo]:
    """Every entry under ``root``, recursively, sorted by path."""
    import pyarrow.fs as pafs
    try:
        return sorted(store.fs.get_file_info(pafs.FileSelector(root, recursive=True)), key=lambda i: i.path)
    except OSError as err:
        raise StclipError(f"cannot list {spec}: {first_line(err)}") from None


def _manifest(spec: str, stores: _Stores) -> tuple[list[VideoRef], list[Missing]]:
    """The videos a manifest lists (blank lines and ``#`` comments skipped); relative entries are relative to the
    manifest's own folder."""
    import pyarrow.fs as pafs
    store = stores(spec)
    try:
        with store.fs.open_input_stream(store.path(spec)) as stream:
            lines = stream.read().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = "not found" if isinstance(err, FileNotFoundError) else first_line(err)
        raise StclipError(f"cannot read manifest {spec}: {reason}") from None
    folder = spec.rsplit("/", 1)[0] if "/" in spec else "."
    entries = [_local_uri(line.strip()) for line in lines]
    entries = [e if URI.match(e) or os.path.isabs(e) else f"{folder}/{e}" for e in entries if e and not e.startswith("#")]
    refs, missing = [], []
    for name, info in zip(entries, _infos(entries, stores)):
        if isinstance(info, str):
            missing.append(Missing(name, info))
        elif info.type == pafs.FileType.File:
            refs.append(VideoRef(name, info.size, info.mtime_ns))
        else:
            missing.append(Missing(name, "video not found" if info.type == pafs.FileType.NotFound else "not a file"))
    return refs, missing


def _infos(names: Sequence[str], stores: _Stores) -> list[pafs.FileInfo | str]:
    """File infos of many entries, one request per filesystem (object stores answer in bulk); an error line for
    entries whose filesystem cannot be opened or read."""
    out: list[pafs.FileInfo | str] = [""] * len(names)
    groups: dict[int, tuple[_Store, list[int]]] = {}
    for i, name in enumerate(names):
        try:
            store = stores(name)
        except StclipError as err:
            out[i] = str(err)
            continue
        groups.setdefault(id(store), (store, []))[1].append(i)
    for store, indices in groups.values():
        try:
            infos: Sequence[pafs.FileInfo | str] = store.fs.get_file_info([store.path(names[i]) for i in indices])
        except (OSError, ValueError):  # ValueError: pyarrow's ArrowInvalid, e.g. a NUL byte in one name
            infos = [_one_info(store, names[i]) for i in indices]  # one by one: the error lands on its own entry
        for i, info in zip(indices, infos):
            out[i] = info
    return out


def _one_info(store: _Store, name: str) -> pafs.FileInfo | str:
    """One entry's file info, or its error line."""
    try:
        return store.fs.get_file_info(store.path(name))
    except (OSError, ValueError) as err:
        return f"cannot read it: {first_line(err)}"


def _local_uri(spec: str) -> str:
    """A ``file://`` URI as the local path it names (so its outputs are named and placed like a path's)."""
    return spec[len("file://"):] if spec.startswith("file://") else spec


def _info(store: _Store, spec: str) -> pafs.FileInfo:
    try:
        return store.fs.get_file_info(store.path(spec))
    except OSError as err:
        raise StclipError(f"cannot read {spec}: {first_line(err)}") from None


def _is_video(name: str) -> bool:
    """A visible file (no hidden folder on its way) with a video extension."""
    parts = name.replace("\\", "/").split("/")
    hidden = any(p.startswith(".") and p not in (".", "..") for p in parts)
    return not hidden and Path(name).suffix.lower() in VIDEO_SUFFIXES


def _excluded(path: str, store: _Store, skip: Sequence[str]) -> bool:
    """Whether a local file lies in one of the ``skip`` folders."""
    if not skip or store.prefix is not None:
        return False
    real = os.path.realpath(path)
    return any(real == s or real.startswith(s.rstrip(os.sep) + os.sep) for s in skip)


@contextmanager
def local_file(ref: VideoRef) -> Iterator[Path]:
    """A local path to decode ``ref`` from: its own path, or a temporary copy of a remote video (deleted on exit)."""
    store = _Stores()(ref.name)
    if store.prefix is None:
        yield ref.path
        return
    with local_copy(store.fs, store.path(ref.name)) as copy:
        yield copy


@contextmanager
def local_copy(fs: pafs.FileSystem, path: str) -> Iterator[Path]:
    """A temporary local copy of ``path`` in ``fs``, under the same file name, deleted on exit (also on errors)."""
    import pyarrow.fs as pafs
    with tempfile.TemporaryDirectory(prefix="stclip-fetch-") as folder:
        copy = Path(folder) / Path(path).name
        try:
            pafs.copy_files(path, str(copy), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        except OSError as err:
            raise StclipError(f"cannot fetch {path}: {first_line(err)}") from None
        yield copy


__all__ = ["expand_inputs", "is_collection", "Missing", "VideoRef", "find_videos", "local_copy", "local_file"]
