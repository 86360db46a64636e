"""Where outputs go and how they are written safely, decided once for every command and engine.

Planning (before any model loads or frame is decoded): which file each output of each video goes to, its format
from its name, folders (a trailing slash means a folder), distinct names for inputs that share a file name, and
refusals: an output that is an input (a video, or any other file or folder the command reads: boxes, actions file,
checkpoint, weights, data root, ground truth...), two outputs on one path, a block device, an unwritable place.

Writing: a regular file (or a symlink to one, written through to its target) is written to a hidden temporary
file beside it, then renamed over it, so an interrupted run (Ctrl-C, SIGTERM, disk full) never leaves a
half-written file under the final name nor a temporary file; a new file gets the umask's permissions and a
replaced one keeps its own. Character devices and FIFOs are written directly (there is nothing to rename), and
``-`` is standard output. ``FileSink`` is the base of every sink that writes through a ``Destination``.

Streams (inputs that are not files: a URL, a webcam, ``-`` for standard input) may never end, so their results leave
as they are produced: their JSON Lines and annotated video are written directly into the target file (``direct``),
and what was written before an interruption stays readable; with no output named, their JSON Lines go to standard
output.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self
from urllib.parse import unquote, urlparse

from stclip_cli.errors import OutputClosed, StclipError
from stclip_cli.records import Sink

STDOUT = "-"


@dataclass(frozen=True)
class OutputKind:
    """One kind of output: its flag, the suffix of files it names inside a folder, the suffixes it accepts for a
    file it is given (None: any name), and whether it can go to standard output."""

    flag: str
    suffix: str
    suffixes: tuple[str, ...] | None
    stdout: bool
    what: str = "a file"


# outputs of a stream written directly into their file as results come (they are readable at every moment)
DIRECT_KINDS = ("jsonl", "video")
# containers we write (H.264 that common players read) and FFmpeg's name for each; what we read: inputs.VIDEO_SUFFIXES
VIDEO_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
VIDEO_SUFFIXES = tuple(VIDEO_CONTAINERS)
KINDS: dict[str, OutputKind] = {
    "json": OutputKind("--json", ".json", None, True),
    "jsonl": OutputKind("--jsonl", ".jsonl", None, True),
    "csv": OutputKind("--csv", ".csv", None, True),
    "video": OutputKind("--video", ".mp4", VIDEO_SUFFIXES, False, "a video"),
    "plot": OutputKind("--plot", ".png", (".png",), False, "a PNG image"),
    "parquet": OutputKind("--parquet", ".parquet", (".parquet",), False, "a Parquet file"),
    "events": OutputKind("--events", ".events.json", (".json", ".jsonl", ".csv", ".vtt", ".srt"), True,
                         "an events file"),
    "event_rows": OutputKind("--parquet", ".parquet", (".parquet",), False, "a Parquet file"),  # Ray: _events/
}


@dataclass(frozen=True)
class Target:
    """Where one output goes: ``path`` as the user will see it, and how it is written: ``file`` (temporary file
    then rename, onto ``real``: the path with symlinks resolved), ``direct`` (a regular file written in place as
    results come, onto ``real``: a stream's JSON Lines and video), ``stream`` (a character device or FIFO, written
    directly) or ``stdout``."""

    path: Path | None
    mode: str
    real: Path | None = None

    @property
    def name(self) -> str:
        """What messages call it."""
        return "standard output" if self.mode == "stdout" else str(self.path)

    @property
    def seekable(self) -> bool:
        """Whether the writer may seek (an MP4 needs it unless it is fragmented)."""
        return self.mode == "file"


@dataclass(frozen=True)
class Source:
    """A file or folder a command reads, and the flag that named it (None for a video argument): never written over
    nor into."""

    path: Path
    flag: str | None = None

    def describe(self) -> str:
        """How messages name it."""
        return f"{self.path} ({self.flag})" if self.flag else str(self.path)


def read_sources(named: Iterable[tuple[str, str | Path | None]]) -> list[Source]:
    """The local files and folders among (flag, value) pairs of what a command reads; values that name nothing on
    this machine (None, ``-``, ``hf-hub:`` ids, model names, URLs) are left out: there is nothing there to protect."""
    out = []
    for flag, value in named:
        text = "" if value is None else str(value)
        if text in ("", STDOUT) or (_SCHEME.match(text) and not text.lower().startswith("file:")):
            continue
        path = _local_path(text)
        if path is not None and os.path.lexists(path):
            out.append(Source(path, flag))
    return out


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # hf-hub:, s3://, http://... (a one-letter drive is not one)


def is_folder_spec(value: str | Path) -> bool:
    """A trailing slash means a folder, whether it exists yet or not; so does an existing folder."""
    text = str(value)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def plan_outputs(
    inputs: Sequence[Path | str], requested: dict[str, str | Path | None], default: str | None = "json",
    always: dict[str, str | Path] | None = None, reads: Sequence[Source] = (),
) -> list[dict[str, Target]]:
    """Every video's outputs, by kind, checked now: formats, folders, distinct names, inputs never written over.

    ``inputs``: files and folders as ``Path``; a ``str`` is a stream (a URL, a webcam, ``-``), whose JSON Lines and
    video are written directly (see the module docstring). ``requested`` maps a kind (json, jsonl, csv, video,
    plot) to what its flag was given (a file, a folder, ``-`` or None). With no output at all, ``default`` goes
    next to each input file as ``<input stem>.stclip<suffix>`` and a stream's JSON Lines to standard output;
    ``default=None`` plans nothing (results are only shown). ``always``: kinds an engine writes in any case (the
    corpus engine's Parquet rows), planned and checked with the others without counting as a chosen output.
    ``reads``: every other file and folder the command reads (``read_sources``); no output is one or lies in one.
    """
    chosen = {kind: value for kind, value in requested.items() if value is not None and str(value) != ""}
    plans: list[dict[str, Target]] = [{} for _ in inputs]
    for kind, value in {**chosen, **(always or {})}.items():
        spec = KINDS[kind]
        if str(value) == STDOUT:
            if not spec.stdout:
                raise StclipError(f"{spec.flag} cannot go to standard output (-): it writes {spec.what}; give a file name")
            if len(inputs) > 1:
                raise StclipError(f"{spec.flag} - takes one video; give a folder for several")
            plans[0][kind] = Target(None, "stdout")
        elif is_folder_spec(value):
            folder = Path(value)
            _check_folder(folder, spec.flag)
            for plan, stem in zip(plans, _distinct_stems(inputs)):
                plan[kind] = classify(folder / f"{stem}{spec.suffix}", spec.flag, in_new_folder=True)
        elif len(inputs) > 1:
            raise StclipError(f"with several videos, {spec.flag} must be a folder (end it with /), not {value}")
        else:
            path = Path(value)
            if spec.suffixes is not None and path.suffix.lower() not in spec.suffixes:
                raise StclipError(f"{spec.flag} writes {spec.what}: name it {' / '.join(spec.suffixes)}, or end it "
                                  f"with / for a folder (got {path})")
            plans[0][kind] = classify(path, spec.flag)
    if not chosen and default is not None:
        suffix = KINDS[default].suffix
        if sum(isinstance(video, str) for video in inputs) > 1:
            raise StclipError("standard output takes one stream's results: with several streams, name an output "
                              "folder, e.g. --jsonl results/")
        for plan, video in zip(plans, inputs):
            if isinstance(video, str):
                plan["jsonl"] = Target(None, "stdout")
                continue
            video = Path(os.path.abspath(video))  # "." and ".." name the folder they stand for
            stem = video.name if video.is_dir() else video.stem
            plan[default] = classify(video.parent / f"{stem}.stclip{suffix}", KINDS[default].flag)
    for plan, video in zip(plans, inputs):
        if isinstance(video, str):
            for kind, target in plan.items():
                lines = kind == "events" and target.path is not None and target.path.suffix.lower() == ".jsonl"
                if (kind in DIRECT_KINDS or lines) and target.mode == "file":
                    plan[kind] = Target(target.path, "direct", target.real)
    _refuse_clashes(inputs, plans, reads)
    return plans


def stream_stem(text: str) -> str:
    """A file name for a stream's outputs in a folder: ``stdin`` for ``-``, else the URL's or device's host and
    path with anything but letters, digits, ``.``, ``_`` and ``-`` turned into ``-`` (``rtsp://cam1/live`` ->
    ``cam1-live``)."""
    if text == STDOUT:
        return "stdin"
    rest = text.split("://", 1)[-1].split("?", 1)[0]
    rest = re.sub(r"^[^/]*@", "", rest)  # never put credentials (user:password@, up to the last @) into a file name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", rest).strip("-.")
    return re.sub(r"\.(mp4|m4v|mov|mkv|ts|m3u8|flv|webm|avi)$", "", stem, flags=re.IGNORECASE) or "stream"


def _distinct_stems(inputs: Sequence[Path | str]) -> list[str]:
    """Output names for inputs written into one folder: the file stem, with as many parent folder names in front
    (``cam1-clip``) as it takes to tell inputs with the same stem apart (a stream: ``stream_stem``)."""
    paths = [None if isinstance(p, str) else Path(os.path.abspath(p)) for p in inputs]
    parts = [(stream_stem(p),) if path is None else path.parts for p, path in zip(inputs, paths)]
    stems = [stream_stem(p) if path is None else path.name if path.is_dir()
             else path.stem for p, path in zip(inputs, paths)]  # a remote video (corpus engine): its stem too
    out = _with_parents(stems, parts)
    if clashing := set(_clashing(out)):  # same folder, same stem: clip.mp4 and clip.mov -> clip-mp4, clip-mov
        stems = [f"{stem}-{paths[i].suffix.lstrip('.')}" if i in clashing and paths[i] is not None and paths[i].suffix
                 else stem for i, stem in enumerate(stems)]
        out = _with_parents(stems, parts)
    if clashing := _clashing(out):
        raise StclipError(f"the same video is given twice: {inputs[clashing[-1]]}")
    return out


def _with_parents(stems: Sequence[str], parts: Sequence[tuple[str, ...]]) -> list[str]:
    """Each name that clashes gets as many of its parent folders' names in front as it takes to be unique."""
    out = list(stems)
    for depth in range(1, max(len(p) for p in parts) + 1):
        clashing = _clashing(out)
        if not clashing:
            break
        for i in clashing:
            parents = [p for p in parts[i][:-1] if p not in ("/", os.sep)][-depth:]
            out[i] = "-".join([*parents, stems[i]])
    return out


def _clashing(names: Sequence[str]) -> list[int]:
    """Indices of names that occur more than once."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [i for i, name in enumerate(names) if counts[name] > 1]


def _check_folder(folder: Path, flag: str) -> None:
    """An output folder exists as a folder, or its nearest existing parent is a writable folder (it is made when
    the first file is written)."""
    if folder.exists():
        if not folder.is_dir():
            raise StclipError(f"{flag} {folder}: not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StclipError(f"cannot write into {folder}: permission denied")
        return
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise StclipError(f"cannot create folder {folder}: {parent} is not a writable folder")


def classify(path: Path, flag: str, in_new_folder: bool = False) -> Target:
    """How ``path`` will be written, refusing what cannot or must not be (folders, block devices, sockets).

    Its folder must exist, unless ``in_new_folder`` (an output folder stclip creates when it writes the file).
    """
    if path.is_symlink() or path.exists():
        try:
            info = os.stat(path)  # follows symlinks: what is written is what the link points to
        except FileNotFoundError:
            info = None  # a dangling symlink: written through, creating its target
        if info is not None:
            if stat.S_ISDIR(info.st_mode):
                raise StclipError(f"cannot write {path}: it is a folder")
            if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
                if not os.access(path, os.W_OK):
                    raise StclipError(f"cannot write {path}: permission denied")
                return Target(path, "stream")
            if not stat.S_ISREG(info.st_mode):
                raise StclipError(f"{flag} {path}: refusing to write to a block device or socket")
        real = Path(os.path.realpath(path))
    else:
        real = Path(os.path.abspath(path))
    _check_regular(real, path, in_new_folder)
    return Target(path, "file", real)


def _check_regular(real: Path, shown: Path, in_new_folder: bool) -> None:
    """The folder of a regular output exists (or will: an output folder) and takes new files."""
    probe = real.parent
    if not probe.exists() and not in_new_folder:
        raise StclipError(f"cannot write {shown}: folder {shown.parent} does not exist")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise StclipError(f"cannot write {shown}: {probe} is not a folder")
    if real.exists() and not os.access(real, os.W_OK):
        raise StclipError(f"cannot write {shown}: permission denied")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StclipError(f"cannot write {shown}: permission denied in {probe}")


def _refuse_clashes(inputs: Sequence[Path | str], plans: list[dict[str, Target]], reads: Sequence[Source] = ()) -> None:
    """No output is an input (a video, a stream that names a path such as a webcam device, or any file or folder in
    ``reads``), and no two outputs share a file."""
    sources = [Source(path) for path in map(_local_path, inputs) if path is not None] + list(reads)
    seen: dict[tuple, tuple[str, Path | str]] = {}
    for plan, video in zip(plans, inputs):
        for kind, target in plan.items():
            flag = KINDS[kind].flag
            if target.mode == "stdout":
                key: tuple = ("stdout",)
            else:
                refuse_inputs(target.path, flag, sources)
                key = _identity(target.path)
            if key in seen and target.mode != "stream":
                other_flag, other_video = seen[key]
                if other_flag == flag and other_video != video:
                    raise StclipError(f"{other_video} and {video} would both write {target.name}: name an output "
                                      f"folder (ending in /), e.g. {flag} results/")
                raise StclipError(f"{target.name} is given to two outputs ({other_flag} and {flag})")
            seen[key] = (flag, video)


def refuse_inputs(path: Path | None, flag: str, sources: Sequence[Source]) -> None:
    """The one rule for every output of every command: it is none of the files the command reads (the same file
    under any name: a symlink, a hard link, a relative path) and lies inside none of the folders it reads."""
    if path is None:
        return
    key = _identity(path)
    real = os.path.realpath(path)
    for source in sources:
        if _identity(source.path) == key:
            raise StclipError(f"{flag} {path} would write over the input {source.describe()}; stclip never writes "
                              f"over an input: choose another name or folder")
        if source.path.is_dir() and real.startswith(os.path.realpath(source.path).rstrip(os.sep) + os.sep):
            raise StclipError(f"{flag} {path} is inside the input folder {source.describe()}; stclip never writes "
                              f"into an input: choose another name or folder")


def _local_path(source: Path | str) -> Path | None:
    """The local file or device an input reads, if any: a path, a ``file:`` URL or an existing device path."""
    if not isinstance(source, str):
        return Path(source)
    if source.lower().startswith("file:"):
        return Path(unquote(urlparse(source).path))
    return Path(source) if source != STDOUT and os.path.exists(source) else None


def _identity(path: Path | None) -> tuple:
    """What makes two paths the same file: device and inode when it exists, else the resolved path."""
    assert path is not None
    try:
        info = os.stat(path)
        return ("inode", info.st_dev, info.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def current_umask() -> int:
    """The process umask: from /proc on Linux; elsewhere by setting and restoring it (for that instant a file that
    another thread creates would get the mask 0, so /proc is read first)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Destination:
    """One output being written: ``open`` gives a file object (a temporary file for regular files), ``commit``
    puts it in place, ``discard`` leaves no trace. OS errors become one-line ``StclipError``s naming the output."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.temp: Path | None = None
        self._file: IO | None = None

    @property
    def name(self) -> str:
        """What messages call it."""
        return self.target.name

    def temp_path(self, suffix: str = "") -> Path:
        """A new hidden temporary file beside the target (for writers that want a path, e.g. PyAV)."""
        assert self.target.mode == "file" and self.target.real is not None
        real = self.target.real
        with self.guard():
            real.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=real.parent, prefix=_temp_prefix(real), suffix=f".part{suffix or real.suffix}")
            os.close(fd)
        self.temp = Path(name)
        return self.temp

    def open(self, text: bool = True) -> IO:
        """The file object to write: a temporary file, the target itself (direct), the device/FIFO, or standard
        output."""
        with self.guard():
            if self.target.mode == "stdout":
                if sys.stdout is None:  # started with standard output closed (>&-)
                    raise StclipError("cannot write standard output: it is closed; name an output file instead of -")
                self._file = sys.stdout if text else sys.stdout.buffer
                return self._file
            if self.target.mode in ("stream", "direct"):
                path = self.target.path if self.target.mode == "stream" else self.target.real
                assert path is not None
                if self.target.mode == "direct":
                    path.parent.mkdir(parents=True, exist_ok=True)  # an output folder is made when first written
                self._file = open(path, "w", encoding="utf-8", newline="") if text else open(path, "wb")
                return self._file
            temp = self.temp_path()
            self._file = open(temp, "w", encoding="utf-8", newline="") if text else open(temp, "wb")
            return self._file

    def commit(self) -> None:
        """Close, then move the temporary file over the target with the permissions a new or replaced file gets."""
        with self.guard():
            self._close()
            if self.temp is not None:
                real = self.target.real
                assert real is not None
                try:
                    mode = stat.S_IMODE(os.stat(real).st_mode)  # a replaced file keeps its permissions
                except FileNotFoundError:
                    mode = 0o666 & ~current_umask()
                os.chmod(self.temp, mode)
                _sync(self.temp)  # the data is on disk before the name points at it: a crash leaves old or new
                os.replace(self.temp, real)
                self.temp = None
                for stale in stale_temporaries(self.target):  # left by a run of this output that was killed
                    stale.unlink(missing_ok=True)

    def discard(self) -> None:
        """Close and delete the temporary file (nothing appears under the target's name); safe to call twice."""
        try:
            self._close()
        except OSError:
            pass  # the write already failed; what matters now is that the temporary file goes
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None

    def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            if sys.stdout is not None and file in (sys.stdout, sys.stdout.buffer):
                file.flush()
            else:
                file.close()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn an OS error (disk full, broken pipe, permission) into one line naming this output."""
        try:
            yield
        except OSError as err:
            if err.errno == errno.EPIPE and self.target.mode == "stdout":
                raise OutputClosed("standard output was closed by its reader") from None
            reason = (err.strerror or str(err) or errno.errorcode.get(err.errno or 0, "I/O error")).lower()
            raise StclipError(f"cannot write {self.name}: {reason}") from None


class FileSink(Sink):
    """What the file sinks share: a ``Destination`` (temporary file then rename, a device or FIFO written directly, or
    standard output), opened per video, committed on ``close``, discarded on ``abort``."""

    def __init__(self, target: Target | str | Path) -> None:
        self.destination = Destination(target if isinstance(target, Target) else classify(Path(target), "output"))

    @property
    def path(self) -> Path | None:
        """The output's path as given (None for standard output)."""
        return self.destination.target.path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _sync(path: Path) -> None:
    """Flush a closed file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def host_name() -> str:
    """This machine, as temporary file names carry it (8 hex digits of its name's hash)."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _temp_prefix(real: Path) -> str:
    """``.<stem>.p<pid>h<host>.``: whose temporary file it is, so a later run can tell one left by a killed writer."""
    return f".{real.stem}.p{os.getpid()}h{host_name()}."


def _temporaries(target: Target) -> list[tuple[Path, int | None, str | None]]:
    """Temporary files of ``target``'s writers beside it, with the pid and host that wrote each (None for names of
    earlier versions). Matches ``temp_path``'s names exactly, so another output's temporary file never does."""
    if target.mode != "file" or target.real is None or not target.real.parent.is_dir():
        return []
    name = re.compile(re.escape(f".{target.real.stem}.") + r"(?:p(\d{1,10})h([0-9a-f]{8})\.)?[a-z0-9_]{8}\.part.*")
    found = []
    for path in sorted(target.real.parent.iterdir()):
        match = name.fullmatch(path.name)
        if match and path.is_file() and not path.is_symlink():
            found.append((path, int(match[1]) if match[1] else None, match[2]))
    return found


def leftover_temporaries(target: Target) -> list[Path]:
    """Temporary files that writers of ``target`` killed without warning (SIGKILL, a lost machine) left beside it.

    A writer that is told to stop discards its own; this is for an engine whose workers die without being told (the
    Ray engine, when the run is interrupted): every writer of its targets is gone.
    """
    return [path for path, _, _ in _temporaries(target)]


def stale_temporaries(target: Target) -> list[Path]:
    """Temporary files of ``target`` whose writer, on this machine, no longer runs (killed with SIGKILL, or by a
    power cut): removed when the same output is written next. Another live run's file is never among them."""
    host = host_name()
    return [path for path, pid, where in _temporaries(target)
            if pid is not None and where == host and pid != os.getpid() and not process_running(pid)]


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def plan_file(path: str | Path, flag: str, inputs: Sequence[Path | str | None] = (), reads: Sequence[Source] = ()) -> Target:
    """One output outside ``plan_outputs`` (an evaluation result, a timeline of a result file, a converted
    checkpoint), checked before any work: writable, ``-`` for standard output, and none of ``inputs`` (read as
    unnamed sources) nor ``reads``, nor inside an input folder."""
    if str(path) == STDOUT:
        return Target(None, "stdout")
    target = classify(Path(path), flag)
    sources = [Source(local) for local in (_local_path(s) for s in inputs if s is not None) if local is not None]
    refuse_inputs(target.path, flag, sources + list(reads))
    return target


def check_writable(path: str | Path) -> Path:
    """Fail now, before any decoding, with "cannot write <path>: <reason>" if ``path`` cannot be written as a
    regular file (for outputs outside ``plan_outputs``, e.g. an evaluation result)."""
    path = Path(path)
    if classify(path, "output").mode != "file":
        raise StclipError(f"cannot write {path}: not a regular file")
    return path


__all__ = ["Destination", "KINDS", "STDOUT", "Source", "Target", "VIDEO_CONTAINERS", "VIDEO_SUFFIXES", "check_writable",
           "classify", "leftover_temporaries", "plan_file", "plan_outputs", "read_sources", "refuse_inputs", "stale_temporaries",
           "stream_stem"]
