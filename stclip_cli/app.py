"""`stclip app`: try detection in a browser, on this machine. Upload a video (or record one from the webcam, or name
a URL), type action names, and get the annotated video, the timeline, the events table and the result files.

Gradio, not Streamlit: it runs in this process from a Python API (one model built once, a lock, a queue), and has
progress, a video player, table-select events and a session-end hook built in; Streamlit re-runs a script per click.

Every job is the pipeline ``stclip detect`` runs (``pipeline.assemble`` -> ``build_pipeline``, the same sinks), into
a folder of the browser session that is removed, with the session's uploads, when the session ends and at exit.
"""

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stclip_cli.errors import StclipError
from stclip_cli.pipeline import DetectConfig

if TYPE_CHECKING:
    from stclip_cli.sinks.events import Event
    from stclip_cli.sources.inputs import StreamInput
    from stclip_cli.pipeline import Pipeline

EVENT_COLUMNS = ["track", "action", "from (s)", "to (s)", "peak"]
VIDEO_ID = "stclip-video"
# a clicked event row seeks the annotated video to its start (runs in the page; ``t`` comes from ``seek``)
SEEK_JS = """(t) => {
  const v = document.querySelector('#stclip-video video');
  if (v && t !== null && t !== undefined) { v.currentTime = Number(t); }
}"""


@dataclass(frozen=True)
class AppSettings:
    """What `stclip app` was started with: where it listens and the model and persons every job uses."""

    model: str = DetectConfig.default("model")
    checkpoint: str | None = None
    clip_weights: str | None = None
    detector: str = DetectConfig.default("detector")
    boxes: str | None = None
    device: str = DetectConfig.default("device")
    host: str = "127.0.0.1"
    port: int = 7860
    quiet: bool = False

    def __post_init__(self) -> None:
        from stclip_cli.pipeline import DEVICE

        if not DEVICE.fullmatch(self.device):
            raise StclipError(f"--device must be auto, cpu, cuda or cuda:N (got '{self.device}')")


@dataclass
class JobResult:
    """The files of one finished job and its events (for the table)."""

    video: Path
    timeline: Path
    json: Path
    csv: Path
    events_file: Path
    events: list["Event"] = field(default_factory=list)
    frames: int = 0
    note: str | None = None


class Runner:
    """One model, built once per (card, checkpoint) and reused by every job; a lock lets one job run at a time.

    New action names re-encode only the text (a new ``Scorer`` on the same network), not the model."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self._key: tuple[str, str | None] | None = None
        self._pipeline: "Pipeline | None" = None
        self.builds = 0

    def config(self, actions: str, model: str | None = None, checkpoint: str | None = None) -> DetectConfig:
        """The detect settings of a job: the CLI's, with events on (they need person tracks)."""
        from stclip_cli.core.actions import parse_actions

        s = self.settings
        return DetectConfig(tuple(parse_actions(actions)), model=model or s.model, checkpoint=checkpoint or None,
                            clip_weights=s.clip_weights, detector=s.detector, boxes=s.boxes, track=True, device=s.device)

    def pipeline(self, config: DetectConfig) -> "Pipeline":
        """The pipeline for ``config``: built when the card or checkpoint changed, else the last one with the text
        of these actions."""
        from stclip_cli.pipeline import assemble, build_pipeline

        assembly = assemble(config)  # names that do not fit the text encoder, a missing checkpoint: one line
        key = (config.model, config.checkpoint)
        if self._pipeline is None or key != self._key:
            self._pipeline, self._key = None, None
            self._pipeline, self._key = build_pipeline(assembly), key
            self.builds += 1
        elif self._pipeline.predictor.scorer.actions != list(config.actions):  # the same network, other text
            self._pipeline = build_pipeline(assembly, detector=self._pipeline.predictor.detector,
                                            model_from=self._pipeline)
        return self._pipeline

    def run(self, source: "Path | StreamInput", name: str, config: DetectConfig, folder: Path,
            progress: Callable[[int, int | None], None] | None = None) -> JobResult:
        """Score one video into ``folder`` with detect's sinks: annotated MP4, timeline PNG, JSON, CSV, events."""
        from stclip_cli.sinks.destinations import plan_outputs
        from stclip_cli.sinks.events import EventRule, EventsSink
        from stclip_cli.sinks.outputs import plan_sinks
        from stclip_cli.sources.video import open_video

        if isinstance(source, Path):
            with open_video(source):  # a file that is no video: the CLI's one line, before the model loads
                pass
        stem = Path(name).stem or "video"
        wanted = {"json": f"{stem}.stclip.json", "csv": f"{stem}.stclip.csv", "video": f"{stem}.annotated.mp4",
                  "plot": f"{stem}.timeline.png", "events": f"{stem}.events.json"}
        [plan] = plan_outputs([source.text if not isinstance(source, Path) else source],
                              {kind: str(folder / file) for kind, file in wanted.items()}, default=None)
        with self.lock:
            pipeline = self.pipeline(config)
            sinks = plan_sinks({k: t for k, t in plan.items() if k != "events"}, config.top_k, video=name)
            events = EventsSink(plan["events"], EventRule(config.event_threshold, config.event_gap, config.event_min,
                                                          neutral=config.neutral), video=name)
            total: list[int | None] = [None]
            done = [0]

            def started(info: Any) -> None:
                total[0] = info.num_frames
                if progress is not None:
                    progress(0, total[0])

            def scored(count: int) -> None:
                done[0] += count
                if progress is not None:
                    progress(done[0], total[0])

            summary = pipeline.predictor.run(source, [*sinks, events], pipeline.info, scored, started)
        return JobResult(folder / wanted["video"], folder / wanted["plot"], folder / wanted["json"],
                         folder / wanted["csv"], folder / wanted["events"], list(events.events), summary.frames,
                         pipeline.info.note)


class Sessions:
    """Each browser session's folder (its job outputs) and uploads; ``end`` removes them, ``close`` removes all."""

    def __init__(self, root: Path, served_copy: Callable[[Path], Path] | None = None) -> None:
        self.root = root
        self.served_copy = served_copy  # where Gradio keeps the copy of an output it serves (a folder of its own)
        self._uploads: dict[str, set[Path]] = {}
        self._lock = threading.Lock()

    def folder(self, session: str) -> Path:
        """A new job folder inside the session's own."""
        base = self.root / "sessions" / _safe(session)
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="job-", dir=base))

    def uploaded(self, session: str, path: str | Path) -> None:
        """Remember an upload of the session, to remove it when the session ends."""
        with self._lock:
            self._uploads.setdefault(session, set()).add(Path(path))

    def end(self, session: str) -> None:
        """The session ended (tab closed or reloaded): remove its uploads and its outputs."""
        with self._lock:
            uploads = self._uploads.pop(session, set())
        for path in uploads:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # Gradio keeps each upload in a folder of its own
        folder = self.root / "sessions" / _safe(session)
        if self.served_copy is not None:
            for output in (p for p in folder.rglob("*") if p.is_file()):
                shutil.rmtree(self.served_copy(output), ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Remove every session's files and Gradio's uploads (the app's whole temporary folder)."""
        shutil.rmtree(self.root, ignore_errors=True)


def _safe(session: str) -> str:
    """A session id as a folder name."""
    return "".join(c for c in session if c.isalnum() or c in "-_") or "anonymous"


def event_rows(events: list["Event"]) -> list[list[Any]]:
    """The events table: one row per event, in the order of the events file."""
    return [[f"#{e.track_id}", e.action, round(e.start, 2), round(e.end, 2), round(e.peak_score, 2)] for e in events]


def model_choices(settings: AppSettings) -> list[str]:
    """The cards the chooser lists: ``stclip``, the shipped cards and the one the app was started with."""
    from stclip_cli.weights.cards import list_cards

    choices = ["stclip", *list_cards()]
    return choices if settings.model in choices else [settings.model, *choices]


@dataclass
class App:
    """The Gradio page with the runner and sessions behind it."""

    demo: Any
    runner: Runner
    sessions: Sessions
    settings: AppSettings

    def launch(self, block: bool = True) -> None:
        """Serve the page on the settings' host and port (127.0.0.1 unless asked); never a public share link."""
        self.demo.launch(server_name=self.settings.host, server_port=self.settings.port, share=False,
                         inbrowser=False, quiet=self.settings.quiet, show_error=True, prevent_thread_lock=not block,
                         allowed_paths=[str(self.sessions.root)])

    def close(self) -> None:
        """Stop serving and remove every file of every session."""
        self.demo.close()
        self.sessions.close()


def build_app(settings: AppSettings, root: Path | None = None) -> App:
    """The Gradio page, its runner and its sessions; Gradio keeps uploads under ``root`` (a new temporary folder,
    removed at exit), so nothing of a session outlives the app."""
    root = root or Path(tempfile.mkdtemp(prefix="stclip-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")  # read when gradio is imported: uploads land in root
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from stclip_cli.sources.inputs import StreamInput, is_stream

    from gradio.processing_utils import hash_file

    cache = root / "gradio"
    runner, sessions = Runner(settings), Sessions(root, lambda output: cache / hash_file(output))
    atexit.register(sessions.close)

    def detect(upload: str | None, webcam: str | None, url: str, actions: str, model: str, checkpoint: str,
               request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple:
        session = request.session_hash or "anonymous"
        for path in (upload, webcam):
            if path:
                sessions.uploaded(session, path)
        try:
            source, name = _source(upload, webcam, url, StreamInput, is_stream)
            config = runner.config(actions, model, checkpoint.strip() or None)
            progress(0, desc="loading the model")

            def report(done: int, total: int | None) -> None:
                progress((done, total) if total else None, desc=f"scoring frames ({done} scored)")

            result = runner.run(source, name, config, sessions.folder(session), report)
        except StclipError as err:  # the CLI's line, naming the file as the user named it, not Gradio's copy
            message = str(err)
            for path in (upload, webcam):
                message = message.replace(path, Path(path).name) if path else message
            raise gr.Error(message, print_exception=False) from None
        status = f"{result.frames} frames scored, {len(result.events)} events"
        if result.note:
            status += f"\n\nnote: {result.note}"
        files = [str(result.json), str(result.csv), str(result.events_file)]
        return str(result.video), str(result.timeline), event_rows(result.events), files, status

    def seek(table: Any, evt: gr.SelectData) -> float | None:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return float(table.iloc[row, 2])
        except (IndexError, ValueError, TypeError, AttributeError):
            return None

    def ended(request: gr.Request) -> None:
        sessions.end(request.session_hash or "anonymous")

    with gr.Blocks(title="stclip: zero-shot action detection", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## stclip: zero-shot action detection\nUpload a video, name the actions, press **Detect**. "
                    "Everything runs on this machine; your files are removed when you close this tab.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="video file", type="filepath", elem_id="stclip-upload")
                webcam = gr.Video(label="or record from the webcam", sources=["webcam"], format=None,
                                  webcam_options=gr.WebcamOptions(mirror=False), include_audio=False)
                url = gr.Textbox(label="or a URL / camera", placeholder="rtsp://..., https://.../clip.mp4, webcam:0",
                                 elem_id="stclip-url")
                actions = gr.Textbox(label="actions (comma-separated)", placeholder="brush teeth, fishing",
                                     elem_id="stclip-actions")
                with gr.Row():
                    model = gr.Dropdown(model_choices(settings), value=settings.model, label="model card",
                                        allow_custom_value=True)
                    checkpoint = gr.Textbox(value=settings.checkpoint or "", label="checkpoint (file or hf-hub:ORG/REPO)",
                                            placeholder="none: the training-free baseline")
                run = gr.Button("Detect", variant="primary", elem_id="stclip-run")
                status = gr.Markdown(elem_id="stclip-status")
            with gr.Column(scale=2):
                video = gr.Video(label="annotated video", elem_id=VIDEO_ID, interactive=False)
                timeline = gr.Image(label="timeline", type="filepath", interactive=False, elem_id="stclip-timeline")
                table = gr.Dataframe(headers=EVENT_COLUMNS, label="events (click one to seek the video)",
                                     interactive=False, elem_id="stclip-events")
                downloads = gr.File(label="downloads: JSON, CSV, events", file_count="multiple", interactive=False,
                                    elem_id="stclip-downloads")
        seek_time = gr.Number(visible=False)
        run.click(detect, [upload, webcam, url, actions, model, checkpoint], [video, timeline, table, downloads, status],
                  concurrency_limit=1, concurrency_id="job")
        table.select(seek, [table], [seek_time]).then(None, [seek_time], None, js=SEEK_JS)
        demo.unload(ended)
    demo.queue(default_concurrency_limit=8)
    return App(demo, runner, sessions, settings)


def _source(upload: str | None, webcam: str | None, url: str, stream: type, is_stream: Callable[[str], bool]) -> tuple:
    """What a job reads (an uploaded file, a webcam recording or a URL) and what its results call it."""
    if upload:
        path = Path(upload)
        return path, path.name
    if webcam:
        return Path(webcam), "webcam.webm"
    text = (url or "").strip()
    if not text:
        raise StclipError("no video: upload a file, record one from the webcam or give a URL")
    if not is_stream(text):
        raise StclipError(f"not a URL or camera: {text} (rtsp://, http(s)://, webcam:0 or /dev/video0)")
    source = stream(text)
    source.probe()  # a dead URL: one line, within its timeout
    return source, source.label


__all__ = ["App", "AppSettings", "JobResult", "Runner", "Sessions", "build_app", "event_rows", "model_choices"]
