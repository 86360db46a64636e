"""`stclip detect` over a corpus on Ray Data: a pool of actors, each building the model, the person detector and the
Predictor once, through which the videos stream. Every video gets the same sinks as in the single-process path
(outputs planned by ``destinations.plan_outputs``, written through ``Destination``s) plus one Parquet file of its
scored rows (rows.py); together those files are one Parquet dataset.

Resumable: a video is done when every planned output exists (outputs are renamed into place only when complete) and
its Parquet file carries this run's stamp (same settings, same video size and modification time); done videos are
skipped. A failing video is recorded (path, one error line) in ``_failures.json`` beside the Parquet files and the
run goes on. A worker process that dies on a video (a decoder crash, out of memory) is restarted by Ray, which
retries the video; a video started ``MAX_ATTEMPTS`` times is recorded as failed instead of being retried forever.

Ray is an optional dependency: nothing here imports it before ``require_ray`` has checked that it is installed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from stclip_cli.sinks.destinations import Source, Target, is_folder_spec, plan_outputs, refuse_inputs
from stclip_cli.errors import StclipError, first_line
from stclip_cli.pipeline import Assembly, Pipeline, build_pipeline

if TYPE_CHECKING:  # pyarrow comes with Ray: imported once require_ray has passed
    from stclip_cli.corpus.inputs import Missing, VideoRef

RAY_MISSING = 'the Ray engine needs Ray: pip install "stclip[ray]"'
FAILURES_NAME = "_failures.json"  # "_" side files are skipped by Parquet dataset readers (pyarrow, pandas, Spark)
LOG_NAME = "_ray.log"
EVENTS_FOLDER = "_events"  # the events tables: "_" keeps them out of the rows dataset for pyarrow, pandas, Spark
OBJECT_STORE_BYTES = 256 << 20  # the object store holds video names and per-video results only, never frames
MAX_ATTEMPTS = 2
STDERR_FD = 2
CONNECT_TIMEOUT_S = 5.0
DEFAULT_CPU_THREADS = 4  # threads of a CPU-only actor unless --cpus-per-actor says: few large actors, less memory


def require_ray() -> None:
    """One line, not a traceback, when Ray Data or pyarrow is not installed."""
    try:
        import pyarrow.parquet  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise StclipError(RAY_MISSING) from None


def build_predictor(assembly: Assembly, threads: int | None = None) -> Pipeline:
    """An actor's pipeline, built by the one builder detect uses. A ``cuda:i`` device means "the GPU Ray gave this
    actor", which it shows the actor as ``cuda``."""
    device = assembly.config.device
    return build_pipeline(assembly, "cuda" if device.startswith("cuda") else device, threads)


@dataclass(frozen=True)
class VideoJob:
    """One video and its planned outputs (``plan["parquet"]``: its rows)."""

    ref: VideoRef
    plan: dict[str, Target]

    def stamp(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The stamp its rows file carries: the run's settings and the video's size and modification time."""
        return {**settings, "video": [self.ref.name, self.ref.size, self.ref.mtime_ns]}

    def done(self, stamp: Mapping[str, Any]) -> bool:
        """Whether a previous run completed it: every output is in place and its rows carry ``stamp``."""
        from stclip_cli.sinks.rows import read_stamp

        targets = list(self.plan.values())
        if any(t.mode != "file" or t.real is None or not t.real.is_file() for t in targets):
            return False
        return read_stamp(self.plan["parquet"].real) == stamp


@dataclass
class VideoResult:
    """What became of one video."""

    video: str
    status: str  # done, failed
    error: str = ""
    frames: int = 0
    rows: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def plan_corpus(refs: Sequence[VideoRef], requested: dict[str, str | Path | None], parquet: str | Path,
                reads: Sequence[Source] = ()) -> list[VideoJob]:
    """Every video's outputs, planned and checked as single-process detect plans them (never over ``reads``), plus
    its rows file in the ``parquet`` folder. Workers write files: standard output, devices and FIFOs are refused
    here, and so are the run's own side files when something other than a plain file lies there."""
    for name in (FAILURES_NAME, LOG_NAME):
        side = Path(str(parquet).rstrip("/")) / name
        check_side_file(side)
        refuse_inputs(side, "--parquet", reads)
    if not refs:
        return []
    if any(ref.remote for ref in refs) and not any(v not in (None, "") for v in requested.values()):
        raise StclipError("videos in an object store have no folder beside them for their JSON: give --json DIR/")
    always = {"parquet": f"{str(parquet).rstrip('/')}/"}
    if requested.get("events") not in (None, ""):  # an events table beside the rows, as "_" side data
        always["event_rows"] = f"{str(parquet).rstrip('/')}/{EVENTS_FOLDER}/"
    plans = plan_outputs([ref.path for ref in refs], requested, always=always, reads=reads)
    reserved = {os.path.realpath(Path(str(parquet).rstrip("/")) / name) for name in (FAILURES_NAME, LOG_NAME)}
    for plan in plans:
        for kind, target in plan.items():
            if target.mode != "file":
                raise StclipError(f"the Ray engine's workers write files; {target.name} is not one (give a folder ending with /)")
            if os.path.realpath(target.path) in reserved:
                raise StclipError(f"{target.path} is the run's own {target.path.name}: rename that video, or give "
                                  f"its outputs another folder")
    return [VideoJob(ref, plan) for ref, plan in zip(refs, plans)]


def output_folders(requested: Mapping[str, str | Path | None], parquet: str | Path) -> list[Path]:
    """The folders this run writes into, which a folder search for inputs must not enter."""
    return [Path(v) for v in [*requested.values(), f"{str(parquet).rstrip('/')}/"] if v not in (None, "") and is_folder_spec(v)]


@dataclass(frozen=True)
class Resources:
    """The actor pool asked for (None: decided from the cluster, see ``pool_size``) and the cluster to join."""

    actors: int | None = None
    cpus: float | None = None
    gpus: float | None = None
    address: str | None = None


def pool_size(resources: Resources, cluster: Mapping[str, float], device: str, videos: int) -> tuple[int, float, float]:
    """Actors, CPUs and GPUs per actor: one actor per GPU (per ``gpus`` GPUs) when the cluster has GPUs and the
    device is not cpu, else one per ``cpus`` cores (default ``DEFAULT_CPU_THREADS``); never more actors than videos."""
    total_cpus, total_gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    gpus = resources.gpus if resources.gpus is not None else (1.0 if total_gpus >= 1 and device != "cpu" else 0.0)
    if device.startswith("cuda") and gpus <= 0:
        raise StclipError(f"--device {device} with the Ray engine needs --gpus-per-actor above 0 (Ray hides GPUs from actors without one)")
    cpus = resources.cpus if resources.cpus is not None else (1.0 if gpus else float(min(DEFAULT_CPU_THREADS, max(1, total_cpus))))
    if resources.actors is not None:
        actors = resources.actors
    elif gpus:
        actors = int(total_gpus // gpus)
    else:
        actors = int(total_cpus // cpus)
    actors = max(1, min(actors, videos))
    if resources.address is None:  # a cluster joined with --ray-address may grow; a local one will not
        for what, need, have in (("CPU", cpus, total_cpus), ("GPU", gpus, total_gpus)):
            if actors * need > have:
                raise StclipError(f"{actors} actors x {need:g} {what}s need {actors * need:g} {what}s; this machine has {have:g} "
                                  f"(lower --actors or --{what.lower()}s-per-actor)")
    return actors, cpus, gpus


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None, temp_dir: str | None = None) -> Iterator[None]:
    """Join the Ray cluster at ``address``, or start Ray on this machine (no dashboard, a small object store, worker
    output kept in Ray's log files); a session already started in this process is used as it is."""
    import ray

    _quiet_ray_data()
    if ray.is_initialized():
        yield
        return
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is not None:
        check_reachable(address)
    on_sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    # a local cluster's session files go into a folder of this run, removed at the end (Ray leaves /tmp/ray behind),
    # unless the user chose where with $RAY_TMPDIR
    own = (tempfile.mkdtemp(prefix="stclip-ray-") if address is None and temp_dir is None
           and not os.environ.get("RAY_TMPDIR") else None)
    try:
        try:
            if address is None:
                ray.init(address="local", num_cpus=num_cpus, object_store_memory=OBJECT_STORE_BYTES,
                         _temp_dir=temp_dir or own, **common)
            else:
                ray.init(address=address, **common)
        except (ConnectionError, OSError, ValueError, RuntimeError) as err:  # unreachable address, socket path too long
            where = f"join the Ray cluster at {address}" if address else "start Ray on this machine"
            raise StclipError(f"cannot {where}: {first_line(err)}") from None
        if on_sigterm is not None:  # Ray's C++ core installs a crash handler that dumps a stack and aborts on SIGTERM
            signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


def check_reachable(address: str) -> None:
    """Fail within seconds when a ``HOST:PORT`` (or ``ray://HOST:PORT``) cluster address does not answer: Ray itself
    keeps retrying for minutes. ``auto`` (the cluster started on this machine) Ray checks at once."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = (err.strerror or str(err) or type(err).__name__).lower()
        raise StclipError(f"cannot join the Ray cluster at {address}: {reason}") from None


def _quiet_ray_data() -> None:
    """Ray Data's progress bars and console log lines off (its log file in the Ray session keeps them): the CLI's own
    progress is the only output."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.CRITICAL + 1)


def check_side_file(path: Path) -> None:
    """The run's own side files (its log, its failures table) are replaced only when a plain file lies there, as
    the last run left it: never written through a symbolic link, into a FIFO or over a folder or device."""
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise StclipError(f"{path} is not a plain file (a link, a folder, a FIFO or a device): stclip writes its run's "
                          f"{path.name} there; move it away")


def open_log(log: Path) -> int:
    """The run's own log file, opened for writing (a descriptor); never through a symbolic link, and never a file of
    another kind (``check_side_file``)."""
    check_side_file(log)
    refused = StclipError(f"{log} is not a plain file (a link, a folder, a FIFO or a device): stclip writes its run's "
                          f"{log.name} there; move it away")
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as err:
        raise StclipError(f"cannot write {log}: {(err.strerror or str(err)).lower()}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in between
        os.close(fd)
        raise refused
    return fd


@contextmanager
def driver_output(log: Path) -> Iterator[IO[str]]:
    """Send what the Ray libraries write to this process's standard error (C++ log lines, raylet notices) to ``log``,
    and give the CLI a stream to the real standard error for its own lines. Redirected at the file descriptor, where
    Ray's C++ core writes; when standard error is not a file descriptor (a test runner's capture), it is left as is."""
    try:
        real = sys.stderr.fileno() == STDERR_FD
    except (AttributeError, OSError, ValueError):
        real = False
    if not real:
        yield sys.stderr
        return
    sys.stderr.flush()
    log.parent.mkdir(parents=True, exist_ok=True)
    sink = open_log(log)
    saved = os.dup(STDERR_FD)
    os.dup2(sink, STDERR_FD)
    os.close(sink)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        terminal.close()
        os.dup2(saved, STDERR_FD)
        os.close(saved)


class VideoWorker:
    """A Ray Data actor: builds the pipeline once, then runs each video it is handed (one per batch) and returns
    one result row per video. Nothing a video does stops the actor: every error becomes that video's result."""

    def __init__(self, assembly: Assembly, attempts: Any, threads: int | None = None) -> None:
        self.assembly = assembly
        self.attempts = attempts
        self.setup_error = ""
        try:
            self.pipeline = build_predictor(assembly, threads)
        except StclipError as err:
            self.setup_error = str(err)
        except Exception as err:  # a worker that cannot start (out of memory, a broken node): every video says why
            self.setup_error = f"{type(err).__name__}: {first_line(err)}"

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """Ray Data's call: the jobs of a batch (encoded by ``encode_job``) in, one result row per video out."""
        results = [self.run(json.loads(str(item))) for item in batch["job"]]
        return {name: [getattr(r, name) if name != "warnings" else "\n".join(r.warnings) for r in results]
                for name in ("video", "status", "error", "frames", "rows", "seconds", "warnings")}

    def run(self, item: Mapping[str, Any]) -> VideoResult:
        """One video through the pipeline into its sinks."""
        import ray

        from stclip_cli.corpus.inputs import local_file
        from stclip_cli.sinks.outputs import plan_sinks
        from stclip_cli.sinks.events import events_sink
        from stclip_cli.sinks.rows import EventRowsSink, RowsSink
        from stclip_cli.sinks.timeline import TimelineSink

        job = decode_job(item)
        name = job.ref.name
        start = time.perf_counter()
        if self.setup_error:
            return VideoResult(name, "failed", f"the worker could not start: {self.setup_error}")
        if ray.get(self.attempts.start.remote(name)) > MAX_ATTEMPTS:
            return VideoResult(name, "failed", f"the worker process died on it {MAX_ATTEMPTS} times (a crash while "
                                               "decoding, or out of memory); see _ray.log and Ray's logs")
        copy = None
        try:
            with local_file(job.ref) as path:
                copy = path if job.ref.remote else None
                shown = name if job.ref.remote else None
                outputs = {k: t for k, t in job.plan.items() if k not in ("parquet", "events", "event_rows")}
                rows = RowsSink(job.plan["parquet"], shown, item["stamp"])
                sinks = [*plan_sinks(outputs, self.assembly.config.top_k, shown), rows]
                if "events" in job.plan:  # first: the timeline and the events table read its events when they close
                    events = events_sink(job.plan["events"], self.assembly.config, False, shown)
                    sinks = [events, *sinks, EventRowsSink(job.plan["event_rows"], events, item["stamp"])]
                    for sink in sinks:
                        if isinstance(sink, TimelineSink):
                            sink.events_from = events
                summary = self.pipeline.predictor.run(path, sinks, self.pipeline.info)
        except StclipError as err:
            return VideoResult(name, "failed", _named(str(err), copy, name))
        except Exception as err:  # a video must not stop the corpus; its line says what went wrong
            return VideoResult(name, "failed", _named(f"{type(err).__name__}: {first_line(err)}", copy, name))
        return VideoResult(name, "done", "", summary.frames, rows.rows, time.perf_counter() - start, summary.warnings)


def _named(message: str, copy: Path | None, name: str) -> str:
    """An error line that names the video as the user knows it, not its temporary local copy."""
    return message.replace(str(copy), name) if copy is not None else message


class Attempts:
    """How often each video was started, counted across actor restarts (a Ray actor of its own, no CPU)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def start(self, video: str) -> int:
        """Count one more start of ``video``; returns the count."""
        self.counts[video] = self.counts.get(video, 0) + 1
        return self.counts[video]


def ray_remote_attempts() -> Any:
    """A new ``Attempts`` actor in the current Ray session (it takes no CPU)."""
    import ray

    return ray.remote(num_cpus=0)(Attempts).remote()


def encode_job(job: VideoJob, stamp: Mapping[str, Any]) -> str:
    """A job as the JSON text a Ray Data row carries (Targets as [path, mode, real])."""
    plan = {k: [str(t.path), t.mode, str(t.real)] for k, t in job.plan.items()}
    ref = job.ref
    return json.dumps({"video": [ref.name, ref.size, ref.mtime_ns], "plan": plan, "stamp": stamp})


def decode_job(item: Mapping[str, Any]) -> VideoJob:
    """The job of ``encode_job``'s text."""
    from stclip_cli.corpus.inputs import VideoRef

    plan = {k: Target(Path(path), mode, Path(real)) for k, (path, mode, real) in item["plan"].items()}
    return VideoJob(VideoRef(*item["video"]), plan)


def run_corpus(assembly: Assembly, jobs: Sequence[VideoJob], stamps: Sequence[Mapping[str, Any]],
               pool: tuple[int, float, float], on_result: Callable[[VideoResult], None]) -> list[VideoResult]:
    """Stream ``jobs`` through a pool of ``pool`` = (actors, CPUs, GPUs per actor) in the current Ray session;
    ``on_result`` hears of each video as it finishes (in completion order)."""
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    actors, cpus, gpus = pool
    attempts = ray_remote_attempts()
    items = [{"video": job.ref.name, "job": encode_job(job, stamp)} for job, stamp in zip(jobs, stamps)]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        VideoWorker,
        batch_size=1,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),  # no queue: a free actor takes the next
        fn_constructor_kwargs={"assembly": assembly, "attempts": attempts, "threads": None if gpus else max(1, int(cpus))},
        num_cpus=cpus,
        num_gpus=gpus,
    )
    results: dict[str, VideoResult] = {}
    for row in dataset.iter_rows():
        warnings = [w for w in str(row["warnings"]).split("\n") if w]
        result = VideoResult(str(row["video"]), str(row["status"]), str(row["error"]), int(row["frames"]),
                             int(row["rows"]), float(row["seconds"]), warnings)
        results[result.video] = result
        on_result(result)
    for job in jobs:  # a block Ray gave up on (it should not: every error is a result) still counts as failed
        if job.ref.name not in results:
            results[job.ref.name] = VideoResult(job.ref.name, "failed", "Ray returned no result for it; see _ray.log")
            on_result(results[job.ref.name])
    return list(results.values())


@dataclass(frozen=True)
class Corpus:
    """A corpus ready to run: its videos with their planned outputs, the manifest entries found missing, and the
    Parquet folder."""

    jobs: list[VideoJob]
    missing: list[Missing]
    parquet: Path


@dataclass
class CorpusReport:
    """What a run did: videos in all, done now, done already (skipped), failures (video, error line), frames and
    seconds of the Ray part, the pool used (actors, CPUs, GPUs per actor; None when Ray was not needed), warnings."""

    videos: int
    done: int
    skipped: int
    failures: list[tuple[str, str]]
    frames: int = 0
    seconds: float = 0.0
    pool: tuple[int, float, float] | None = None
    warnings: list[str] = field(default_factory=list)


def prepare(specs: Sequence[str], outputs: dict[str, str | Path | None], parquet: str | Path,
            reads: Sequence[Source] = ()) -> Corpus:
    """Find the videos (never inside this run's output folders) and plan every output (never over ``reads``, the
    other files the run reads), before any model loads."""
    from stclip_cli.corpus.inputs import find_videos

    refs, missing = find_videos(specs, exclude=output_folders(outputs, parquet))
    return Corpus(plan_corpus(refs, outputs, parquet, reads), missing, Path(parquet))


Progress = Callable[[IO[str], int, tuple[int, float, float]], Any]  # (terminal, videos, pool) -> context manager


def execute(corpus: Corpus, assembly: Assembly, resources: Resources, progress: Progress) -> CorpusReport:
    """Skip the done videos, run the others on Ray (started or joined only when there is work), write the failures
    table. ``progress`` makes the context manager yielding the per-video callback, given a stream to the terminal."""
    run_stamp = assembly.stamp()
    stamps = [job.stamp(run_stamp) for job in corpus.jobs]
    todo = [(job, stamp) for job, stamp in zip(corpus.jobs, stamps) if not job.done(stamp)]
    report = CorpusReport(len(corpus.jobs) + len(corpus.missing), 0, len(corpus.jobs) - len(todo),
                          [(m.name, m.error) for m in corpus.missing])
    if todo:
        start = time.perf_counter()
        discard_leftovers(job for job, _ in todo)  # of a run killed before it could clean up
        try:
            with driver_output(corpus.parquet / LOG_NAME) as terminal, ray_session(resources.address):
                report.pool = pool_size(resources, cluster_resources(), assembly.config.device, len(todo))
                with progress(terminal, len(todo), report.pool) as on_result:
                    results = run_corpus(assembly, [job for job, _ in todo], [stamp for _, stamp in todo], report.pool,
                                         on_result)
        finally:  # interrupted: Ray kills the actors mid-write, leaving their temporary files
            discard_leftovers(job for job, _ in todo)
        report.seconds = time.perf_counter() - start
        report.done = sum(r.status == "done" for r in results)
        report.frames = sum(r.frames for r in results)
        report.failures += [(r.video, r.error) for r in results if r.status == "failed"]
        report.warnings = list(dict.fromkeys(w for r in results for w in r.warnings))
    write_failures(corpus.parquet, report.failures)
    return report


def discard_leftovers(jobs: Iterable[VideoJob]) -> None:
    """Delete the temporary files that killed workers left beside these jobs' outputs."""
    from stclip_cli.sinks.destinations import leftover_temporaries

    for job in jobs:
        for target in job.plan.values():
            for path in leftover_temporaries(target):
                path.unlink(missing_ok=True)


def cluster_resources() -> dict[str, float]:
    """The resources of the Ray cluster this process is connected to."""
    import ray

    return dict(ray.cluster_resources())


def write_failures(folder: str | Path, failures: Sequence[tuple[str, str]]) -> Path:
    """The failures table (a JSON list of {video, error}), replaced atomically; ``[]`` when nothing failed."""
    from stclip_cli.sinks.outputs import atomic_text

    path = Path(f"{str(folder).rstrip('/')}/{FAILURES_NAME}")
    check_side_file(path)  # again: something may have been put there while the run went on
    path.parent.mkdir(parents=True, exist_ok=True)  # a run whose every video failed before writing any rows
    rows = [{"video": video, "error": error} for video, error in failures]
    return atomic_text(path, json.dumps(rows, indent=1, ensure_ascii=False) + "\n")


def ray_engine_asked(engine: str | None, ray_options: dict[str, Any]) -> bool:
    """--engine, or ray when any Ray option is given; a Ray option with --engine local is refused."""
    if engine not in (None, "local", "ray"):
        raise StclipError(f"--engine must be local or ray, not '{engine}'")
    given = [flag for flag, value in ray_options.items() if value is not None]
    if engine == "local" and given:
        raise StclipError(f"{given[0]} is an option of the Ray engine; drop it or --engine local")
    return engine == "ray" or (engine is None and bool(given))


def cli_uri(text: str) -> str:
    """A URI as typed: Typer hands arguments over as pathlib Paths, which fold ``s3://b/k`` into ``s3:/b/k``."""
    at, text = ("@", text[1:]) if text.startswith("@") else ("", text)
    folded = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]+):/(?!/)(.*)$", text)
    if folded:
        scheme, rest = folded.groups()
        text = f"file:///{rest}" if scheme == "file" else f"{scheme}://{rest}"
    return at + text


__all__ = ["cli_uri", "ray_engine_asked", 
    "Corpus", "CorpusReport", "check_side_file", "FAILURES_NAME", "LOG_NAME", "RAY_MISSING", "Resources", "VideoJob",
    "VideoResult", "VideoWorker", "build_predictor", "cluster_resources", "decode_job", "driver_output", "encode_job",
    "execute", "output_folders", "plan_corpus", "pool_size", "prepare", "ray_remote_attempts", "ray_session",
    "require_ray", "run_corpus", "write_failures",
]
