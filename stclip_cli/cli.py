"""The `stclip` command line: detect / train / eval / splits / params. Parsing and messages only; the work is done
by the predictor, trainer and evaluator modules."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stclip_cli.errors import OutputClosed, StclipError
from stclip_cli.pipeline import DetectConfig, detect_reads
from stclip_cli.report import (console, corpus_progress, friendly, note, print_aps, print_events, print_summary,
                               run_one, run_with_progress, timeline_collector, warn)

DEFAULT = DetectConfig.default  # detect's defaults live in DetectConfig, the one place

app = typer.Typer(
    name="stclip",
    help=(
        "Zero-shot spatio-temporal action detection with ST-CLIP: find every person, score the actions you name.\n\n"
        'Example: stclip detect video.mp4 --actions "brush teeth,fishing" --video annotated.mp4'
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
EVENTS_PANEL = "Action events"
RAY_PANEL = "Corpora on Ray (pip install \"stclip\\[ray]\")"  # \\[: a bracket, not rich markup


def _version(value: bool) -> None:
    if value:
        from stclip_cli import __version__

        Console().print(f"stclip {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit", metavar=""),
) -> None:
    """Zero-shot spatio-temporal action detection with ST-CLIP: find every person, score the actions you name."""




@app.command()
@friendly
def splits(dataset: Optional[str] = typer.Option(None, help="jhmdb, ucf24 or ava; all when omitted")) -> None:
    """List the built-in zero-shot label splits (train / unseen test classes).

    Example: stclip splits --dataset jhmdb
    """
    from stclip_cli.data.splits import list_splits

    table = Table(title="zero-shot label splits")
    for col in ("dataset", "split", "train classes", "unseen (test) classes"):
        table.add_column(col)
    for s in list_splits():
        if dataset is None or s.dataset == dataset:
            table.add_row(s.dataset, str(s.split), str(len(s.train_classes)), ", ".join(s.test_classes))
    Console().print(table)
    Console().print("--split all trains on every class of a dataset (none unseen): the model to deploy.")


@app.command()
@friendly
def params(model: str = typer.Option("stclip-vitb16", help="model card name or .yaml path")) -> None:
    """Count the trainable parameters of a model card (random CLIP weights; nothing is downloaded).

    Example: stclip params --model stclip-vitb16
    """
    from stclip_cli.weights.cards import load_card
    from stclip_cli.model.params import PAPER_TUNED_PARAMETERS, parameter_report

    card = load_card(model)
    report = parameter_report(card)
    table = Table(title=f"trainable parameters of {card.name} ({card.backbone}, T={card.window})")
    table.add_column("module")
    table.add_column("parameters", justify="right")
    for name, count in report.groups.items():
        table.add_row(name, f"{count:,}")
    table.add_row("[b]total[/b]", f"[b]{report.total:,}[/b] ({report.total / 1e6:.2f} M)")
    out = Console()
    out.print(table)
    ref = report.reference_total
    out.print(
        f"as the paper counts (adds the reference's unused temporal FFN + LayerNorm, {report.reference_extra:,}): "
        f"{ref:,} ({ref / 1e6:.2f} M, {100 * (ref / PAPER_TUNED_PARAMETERS - 1):+.2f}% vs the paper's 55.11 M)"
    )


@app.command()
@friendly
def detect(
    videos: list[str] = typer.Argument(..., help="video files (anything FFmpeg decodes), folders of frames, or streams: "
                                       "rtsp:// or http(s):// URLs, a webcam (/dev/video0, webcam:0), - for standard input"),
    actions: Optional[str] = typer.Option(None, help='comma-separated action names, e.g. "brush teeth,fishing"; write a comma inside a name as \\, ("pick up\\, then throw")'),
    actions_file: Optional[Path] = typer.Option(None, help="a file with one action name per line"),
    model: str = typer.Option(DEFAULT("model"), help="stclip, baseline, baseline-crop, or a model card (name or .yaml)"),
    checkpoint: Optional[str] = typer.Option(
        None, help="ST-CLIP weights: a file written by `stclip train` or hf-hub:ORG/REPO; without one (and no "
        "$STCLIP_CHECKPOINT) --model stclip scores with the training-free baseline", show_default="$STCLIP_CHECKPOINT"),
    backbone: Optional[str] = typer.Option(None, help="open_clip model name, e.g. ViT-B-16", show_default="the card's"),
    pretrained: Optional[str] = typer.Option(None, help="open_clip pretrained tag", show_default="openai"),
    clip_weights: Optional[Path] = typer.Option(None, help="local CLIP weights file (offline use)"),
    detector: str = typer.Option(DEFAULT("detector"), help="ultralytics person detector: name, .pt path or .yaml"),
    boxes: Optional[Path] = typer.Option(None, help="precomputed person boxes (detect JSON or COCO-results JSON)"),
    boxes_format: Optional[str] = typer.Option(None, help="format of --boxes: stclip (the detect JSON), coco (a list, bbox is x, y, width, height) or xyxy (a list, bbox is x1, y1, x2, y2); default: stclip for an object with frames, coco for a list"),
    person_conf: float = typer.Option(DEFAULT("person_conf"), help="detector confidence threshold"),
    fp_margin: Optional[float] = typer.Option(None, help="the paper's false-positive filter: keep the best box S and boxes scoring above S - margin", show_default="off: every detection is scored"),
    window: Optional[int] = typer.Option(None, help="frames per window T", show_default="the model's, 9"),
    stride: int = typer.Option(DEFAULT("stride"), help="score every N-th frame; others carry its boxes in the video output"),
    single_action: bool = typer.Option(False, "--single-action", help="soft voting: one action distribution per video", metavar=""),
    track: bool = typer.Option(False, "--track", help="ByteTrack track ids per person", metavar=""),
    smooth: Optional[float] = typer.Option(None, help="with --track: EMA weight of the new scores (stclip addition)"),
    json_out: Optional[str] = typer.Option(None, "--json", help="JSON output: a file, - for stdout, or a folder (ends with /)", show_default="<video>.stclip.json beside each video"),
    video_out: Optional[str] = typer.Option(None, "--video", help="annotated video: .mp4, .m4v, .mov or .mkv, or a folder (ends with /)"),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="AVA-style CSV output: a file, - for stdout, or a folder (ends with /)"),
    jsonl_out: Optional[str] = typer.Option(None, "--jsonl", help="JSON Lines, one line per scored frame, flushed as it is scored: a file, - for stdout, or a folder (ends with /)", show_default="a stream's go to stdout when no output is named"),
    show: bool = typer.Option(False, "--show", help="show the annotated frames in a window as they are scored (q quits)", metavar=""),
    live: Optional[bool] = typer.Option(None, "--live/--no-live", help="streams: score fewer frames when scoring falls behind the source", show_default="rtsp/rtmp/udp/srt, webcams, http(s) without a duration", metavar=""),
    timeout: float = typer.Option(10.0, help="streams: seconds to wait for a network source to answer or send data"),
    plot: Optional[str] = typer.Option(None, "--plot", help="timeline PNG: each person's top actions over time, or a folder (ends with /)"),
    events: Optional[str] = typer.Option(None, "--events", help="action events per person track (turns on --track): .json, .jsonl, .csv, .vtt or .srt, - for stdout, or a folder (ends with /)", rich_help_panel=EVENTS_PANEL),
    event_threshold: float = typer.Option(DEFAULT("event_threshold"), help="an action is on for a person when it is their top-1 (sigmoid models: any action) with a score at least this", rich_help_panel=EVENTS_PANEL),
    event_gap: float = typer.Option(DEFAULT("event_gap"), help="seconds without the action that do not end its event (flicker is bridged)", rich_help_panel=EVENTS_PANEL),
    event_min: float = typer.Option(DEFAULT("event_min"), help="seconds an event lasts at least (shorter blips are dropped)", rich_help_panel=EVENTS_PANEL),
    neutral: Optional[str] = typer.Option(None, help='names scored as a way out for softmax but never made events, e.g. "standing,walking" (added to the actions)', rich_help_panel=EVENTS_PANEL),
    top_k: int = typer.Option(DEFAULT("top_k"), help="actions drawn per person in --video"),
    frame_fit: str = typer.Option(DEFAULT("frame_fit"), help="context frame: crop (CLIP's centre crop, the paper) or letterbox"),
    interest_k: Optional[int] = typer.Option(None, help="interest tokens per person (multi-action data, AVA: 100); 0 = all tokens", show_default="the card's"),
    fps: Optional[float] = typer.Option(None, help="frame rate of a folder of frames, or of a stream without timestamps (raw H.264 on -)", show_default="25"),
    device: str = typer.Option(DEFAULT("device"), help="auto, cpu, cuda or cuda:i"),
    batch_size: Optional[int] = typer.Option(None, help="keyframes scored per forward pass", show_default="8 on a GPU, 1 on CPU"),
    half: bool = typer.Option(False, help="bf16 on GPU", metavar=""),
    int8: bool = typer.Option(False, "--int8", help="int8 CPU path: the model 2.5-3x faster, probabilities within ~3e-3 of fp32; kept in ~/.cache/stclip after the first run (see README, Speed)", metavar=""),
    quiet: bool = typer.Option(False, help="no progress bar or summary", metavar=""),
    # corpora on Ray Data (stclip_cli/corpus.py): any of these runs detect on Ray
    engine: Optional[str] = typer.Option(None, help="local (this process) or ray (Ray Data actors over a corpus)", show_default="ray when a Ray option is given", rich_help_panel=RAY_PANEL),
    parquet: Optional[Path] = typer.Option(None, help="Ray: folder of the Parquet dataset of every scored row (one file per video) and _failures.json", rich_help_panel=RAY_PANEL),
    actors: Optional[int] = typer.Option(None, min=1, help="Ray: actors, each loading the model once", show_default="one per GPU, else one per 4 CPUs", rich_help_panel=RAY_PANEL),
    cpus_per_actor: Optional[float] = typer.Option(None, min=0.1, help="Ray: CPUs (torch threads) per actor", show_default="4 without GPUs, else 1", rich_help_panel=RAY_PANEL),
    gpus_per_actor: Optional[float] = typer.Option(None, min=0.0, help="Ray: GPUs per actor (0.5: two actors share one)", show_default="1 when the cluster has GPUs", rich_help_panel=RAY_PANEL),
    ray_address: Optional[str] = typer.Option(None, help="Ray: join a running cluster (auto, HOST:6379, ray://HOST:10001)", show_default="start Ray on this machine", rich_help_panel=RAY_PANEL),
) -> None:
    """Find every person in each video and score the named actions for each, frame by frame.

    Examples: stclip detect video.mp4 --actions "brush teeth,fishing" ;
    stclip detect clip.mp4 --actions-file actions.txt --checkpoint runs/jhmdb-split1/final.safetensors --video out.mp4 ;
    stclip detect clip.mp4 --actions "clap,wave" --model baseline-crop --boxes boxes.json --json - ;
    stclip detect clip.mp4 --actions "clap,wave" --track --plot timeline.png ;
    stclip detect rtsp://camera/stream --actions "fall down,fight" --jsonl - --video live.mp4 ;
    stclip detect clips/ "s3://bucket/cams/**.mp4" @more.txt --actions "clap,wave" --json out/json/ --parquet out/rows/ --actors 4
    """
    from stclip_cli.core.actions import parse_actions
    from stclip_cli.pipeline import DetectConfig

    # everything a user can get wrong is checked here, before torch and the models load (seconds)
    names = parse_actions(actions, actions_file)
    neutrals = tuple(parse_actions(neutral)) if neutral is not None else ()  # the rules of --actions, commas and all
    names += [n for n in neutrals if n.casefold() not in {m.casefold() for m in names}]
    config = DetectConfig(
        tuple(names), model, checkpoint, backbone, pretrained, window, interest_k,
        str(clip_weights) if clip_weights else None, detector, str(boxes) if boxes else None, boxes_format, person_conf,
        fp_margin, stride, batch_size, single_action, track or events is not None, smooth, fps, frame_fit, top_k, device,
        half, int8, event_threshold, event_gap, event_min, neutrals)
    if not (math.isfinite(timeout) and timeout > 0):
        raise StclipError(f"--timeout must be a number of seconds above 0 (got {timeout})")
    reads = detect_reads(actions_file, model, checkpoint, clip_weights, detector, boxes)
    ray_options = {"--parquet": parquet, "--actors": actors, "--cpus-per-actor": cpus_per_actor,
                   "--gpus-per-actor": gpus_per_actor, "--ray-address": ray_address}
    from stclip_cli.corpus.engine import ray_engine_asked

    if ray_engine_asked(engine, ray_options):
        from stclip_cli.corpus.engine import Resources

        return _detect_corpus([str(v) for v in videos], config, parquet=parquet, reads=reads, quiet=quiet,
                              resources=Resources(actors, cpus_per_actor, gpus_per_actor, ray_address),
                              outputs={"json": json_out, "video": video_out, "csv": csv_out, "plot": plot,
                                       "events": events})
    from stclip_cli.sources.inputs import StreamInput, check_inputs

    failures = 0
    outputs = {"json": json_out, "jsonl": jsonl_out, "video": video_out, "csv": csv_out, "plot": plot, "events": events}
    from stclip_cli.corpus.inputs import expand_inputs

    videos, absent = expand_inputs(videos, outputs)
    for name, error in absent:  # a manifest's missing entries: the rest of it still runs, as on Ray
        failures += 1
        console.print(f"[red]error:[/red] {escape(name)}: {escape(error)}", highlight=False, soft_wrap=True)
    inputs = check_inputs(videos, single_action, live, timeout, warn, note)
    for missing in [v for v in inputs if isinstance(v, Path) and not v.exists()]:
        failures += 1
        console.print(f"[red]error:[/red] video not found: {escape(str(missing))}", highlight=False, soft_wrap=True)
    inputs = [v for v in inputs if isinstance(v, StreamInput) or v.exists()]
    if not inputs:
        raise typer.Exit(1)
    if show:
        from stclip_cli.sinks.display import check_display

        check_display()
    for path, flag in ((clip_weights, "--clip-weights"), (boxes, "--boxes")):
        if path is not None and not path.is_file():
            raise StclipError(f"file not found: {path} ({flag})")
    from stclip_cli.sinks.destinations import plan_outputs

    plans = plan_outputs([v.text if isinstance(v, StreamInput) else v for v in inputs], outputs,
                         default=None if show else "json", reads=reads)
    for video in [v for v in inputs if isinstance(v, StreamInput)]:
        from stclip_cli.sources.opener import probe  # PyAV loads only when there is a stream to probe

        try:
            probe(video)  # a dead URL fails now, within --timeout, before the models load
        except StclipError as err:
            failures += 1
            console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
            plans.pop(inputs.index(video))
            inputs.remove(video)
    if not inputs:
        raise typer.Exit(1)
    from stclip_cli.pipeline import assemble, build_pipeline

    assembly = assemble(config)
    pipeline = build_pipeline(assembly)
    from stclip_cli.sinks.outputs import plan_sinks

    if assembly.note:  # said once the stand-in model is ready, so an error that stops the run stays its only line
        console.print(f"[yellow]note:[/yellow] {assembly.note}; see README, 'Training a checkpoint'", highlight=False, soft_wrap=True)
    summaries = []
    every_sink: list = []
    timelines = []  # the terminal summary's, when it can show them
    paces = []  # a stream's latency and stride, for the summary
    for video, plan in zip(inputs, plans):
        try:
            sinks = plan_sinks({k: t for k, t in plan.items() if k != "events"}, top_k) + ([_window(video, top_k)] if show else [])
            if "events" in plan:  # first: closed before the timeline, which draws its spans
                from stclip_cli.sinks.events import events_sink
                from stclip_cli.sinks.timeline import TimelineSink

                sinks.insert(0, events_sink(plan["events"], config, isinstance(video, StreamInput)))
                for sink in sinks:
                    if isinstance(sink, TimelineSink):
                        sink.events_from = sinks[0]
            meter = _pace_meter(video)  # last: it times each result after the outputs got it
            collector, fed = timeline_collector(quiet, sinks)
            extra = [sink for sink in (meter, None if fed else collector) if sink is not None]
            every_sink += sinks
            summaries.append((run_one(pipeline.predictor, video, sinks + extra, pipeline.info, quiet), plan))
            timelines.append(collector)
            if meter is not None:
                paces.append(f"{video.name}: {meter.summary(stride)}")
            if isinstance(video, StreamInput) and video.failure is not None:
                raise StclipError(video.failure)
        except OutputClosed:
            raise
        except StclipError as err:
            failures += 1
            console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
    if not quiet and summaries:
        print_summary(summaries, list(config.actions), timelines)
        print_events([sink for sink in every_sink if hasattr(sink, "events")])
        for line in paces:
            console.print(line, highlight=False, soft_wrap=True, markup=False)
    if failures:
        raise typer.Exit(1)


def _window(video, top_k: int):
    """--show's window: q stops a stream (its outputs are finished) and is Ctrl-C for a file."""
    from stclip_cli.sinks.display import WindowSink
    from stclip_cli.sources.inputs import StreamInput

    return WindowSink(video.name, top_k, video.stop.set) if isinstance(video, StreamInput) else WindowSink(video.name, top_k)


def _pace_meter(video):
    """A stream's latency and stride meter for the summary; None for a file."""
    from stclip_cli.sinks.outputs import PaceMeter
    from stclip_cli.sources.inputs import StreamInput

    return PaceMeter() if isinstance(video, StreamInput) else None


def _detect_corpus(specs: list[str], config, *, parquet: Optional[Path], resources, outputs: dict, reads: list,
                   quiet: bool) -> None:
    """`detect` on the Ray engine: videos found and outputs planned, then the pipeline assembled (the same assembly
    single-process detect uses), all before Ray starts; the work in corpus.py, the messages here."""
    from stclip_cli.corpus.engine import require_ray

    require_ray()
    from stclip_cli.corpus.engine import execute, prepare
    from stclip_cli.sinks.destinations import read_sources
    from stclip_cli.pipeline import assemble

    if parquet is None:
        raise StclipError("the Ray engine writes a Parquet dataset of every scored row: give --parquet DIR/")
    if str(parquet) == "-":
        raise StclipError("--parquet cannot go to standard output (-): it writes a folder of Parquet files; give DIR/")
    from stclip_cli.corpus.engine import cli_uri

    uris = [cli_uri(s) for s in specs]
    manifests = read_sources(("@manifest", uri[1:]) for uri in uris if uri.startswith("@"))
    corpus = prepare(uris, outputs, parquet, reads + manifests)
    assembly = assemble(config)
    if assembly.boxes is None:  # a YOLO is loaded once here to check (and fetch) it, not by every actor at once
        from stclip_cli.core.detection import YoloPersonDetector

        YoloPersonDetector(config.detector, config.person_conf, "cpu", half=False)
    if assembly.note:
        console.print(f"[yellow]note:[/yellow] {assembly.note}; see README, 'Training a checkpoint'", highlight=False, soft_wrap=True)
    report = execute(corpus, assembly, resources, lambda terminal, total, pool: corpus_progress(
        Console(file=terminal, stderr=True), quiet, total, pool))
    if not quiet:
        on = f" on {report.pool[0]} actor{'s' * (report.pool[0] > 1)}" if report.pool else ""
        speed = (f"; {report.frames} frames in {report.seconds:.1f} s ({report.frames / max(report.seconds, 1e-9):.1f} "
                 f"frames/s{on})" if report.pool else "")
        console.print(f"{report.videos} video{'s' * (report.videos != 1)}: {report.done} done, {report.skipped} already done (skipped), "
                      f"{len(report.failures)} failed{speed}; rows in {escape(str(parquet))}", highlight=False, soft_wrap=True)
        for warning in report.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    for video, error in report.failures:
        line = error if video in error else f"{video}: {error}"
        console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    if report.failures:
        raise typer.Exit(1)


@app.command()
@friendly
def train(
    dataset: str = typer.Option(..., help="jhmdb, ucf24 or ava"),
    split: str = typer.Option(..., help="label split number (see `stclip splits`), or all: every class (to deploy)"),
    data_root: Optional[Path] = typer.Option(None, help="dataset folder", show_default="$STCLIP_DATA/<dataset> or ~/.cache/stclip/data/<dataset>"),
    out: Optional[Path] = typer.Option(None, help="run folder", show_default="runs/<dataset>-split<K>"),
    model: Optional[str] = typer.Option(None, help="model card", show_default="stclip-vitb16; ava: stclip-vitl14-ava"),
    clip_weights: Optional[Path] = typer.Option(None, help="local CLIP weights file instead of the open_clip download"),
    iterations: Optional[int] = typer.Option(None, help="training steps in all (at least 1; with --resume, the total to reach)", show_default="3000; ava: 20000"),
    batch_size: int = typer.Option(8, help="keyframes per step (over all GPUs)"),
    lr: Optional[float] = typer.Option(None, help="base learning rate", show_default="2.5e-4; ava: 4e-4"),
    momentum: float = typer.Option(0.9, help="SGD momentum (0 to below 1)"),
    weight_decay: float = typer.Option(1e-7, help="SGD weight decay (L2)"),
    warmup_iters: Optional[int] = typer.Option(None, help="steps of linear learning-rate warm-up (0: none)", show_default="800; ava: 2000"),
    warmup_factor: float = typer.Option(0.25, help="learning rate at step 0, as a fraction of --lr (0 to 1)"),
    max_boxes: int = typer.Option(10, help="ground-truth boxes per keyframe at most (random subset)"),
    seed: int = typer.Option(2, help="fixes initialisation, data order and box subsets (a resumed run continues exactly)"),
    checkpoint_every: int = typer.Option(500, help="write <out>/last.safetensors every this many steps"),
    log_every: int = typer.Option(20, help="append a row to <out>/metrics.jsonl every this many steps"),
    workers: int = typer.Option(2, help="data-loading processes (0: load in the main process)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:i"),
    half: bool = typer.Option(False, help="bf16 autocast on GPU", metavar=""),
    resume: bool = typer.Option(False, help="continue from <out>/last.safetensors", metavar=""),
    pool: Optional[str] = typer.Option(None, help="jhmdb/ucf24 videos: official (the split's videos in the official train half, the reference's) or all (both halves)", show_default="official"),
    quiet: bool = typer.Option(False, help="no progress bar", metavar=""),
) -> None:
    """Train ST-CLIP on a label split's train classes with the paper's hyper-parameters.

    Examples: stclip train --dataset jhmdb --split 3 ; stclip train --dataset jhmdb --split all (a model to deploy) ;
    torchrun --nproc_per_node 8 -m stclip_cli train --dataset ava --split 1
    """
    from stclip_cli.data import default_data_root, open_dataset, pool_option
    from stclip_cli.data.splits import parse_split
    from stclip_cli.sinks.destinations import read_sources
    from stclip_cli.benchmark.train import PAPER_DEFAULTS, TrainConfig, Trainer, default_run_dir

    split = parse_split(split)
    defaults = PAPER_DEFAULTS.get(dataset.lower())
    if defaults is None:
        raise StclipError(f"unknown dataset '{dataset}': expected one of {', '.join(PAPER_DEFAULTS)}")
    options = pool_option(dataset, pool)
    cfg = TrainConfig(  # checks every number flag, before the dataset or any model loads
        dataset=dataset.lower(), split=split, out=out or default_run_dir(dataset.lower(), split),
        model=model or defaults["model"], iterations=defaults["iterations"] if iterations is None else iterations, batch_size=batch_size,
        lr=defaults["lr"] if lr is None else lr, momentum=momentum, weight_decay=weight_decay,
        warmup_iters=defaults["warmup_iters"] if warmup_iters is None else warmup_iters, warmup_factor=warmup_factor,
        max_boxes=max_boxes, seed=seed, checkpoint_every=checkpoint_every, log_every=log_every, workers=workers,
        device=device, half=half, options=options,
    )
    view = open_dataset(dataset, data_root, split, "train", **options)
    if data_root is not None:  # recorded so that `stclip eval` with no flags finds the same data
        options["data_root"] = str(data_root.resolve())
    from stclip_cli.benchmark.train import check_run_folder

    check_run_folder(cfg.out, read_sources([
        ("--data-root", data_root if data_root is not None else default_data_root(dataset.lower())),
        ("--clip-weights", clip_weights), ("--model", model if model and model.endswith((".yaml", ".yml")) else None)]))
    if not resume and (cfg.out / "last.safetensors").exists():
        raise StclipError(f"{cfg.out} already holds a run; pass --resume to continue it or --out DIR for a new one")
    trainer = Trainer(cfg, view, clip_weights=clip_weights)
    if resume:
        trainer.resume()
    final = run_with_progress(trainer, quiet or trainer.rank != 0)
    if trainer.rank == 0:
        console.print(f"final checkpoint: {final}")


@app.command("import-reference")
@friendly
def import_reference(
    reference: Path = typer.Argument(..., help="a checkpoint saved by the reference ST-CLIP code (.pth/.pt)"),
    out: Path = typer.Option(..., help="the stclip checkpoint to write (.safetensors)"),
    model: str = typer.Option("stclip-vitb16", help="the card the reference was trained as (backbone, T, LoRA rank)"),
    dataset: Optional[str] = typer.Option(None, help="dataset it was trained on (recorded for `stclip eval`)"),
    split: Optional[int] = typer.Option(None, help="label split it was trained on (recorded for `stclip eval`)"),
) -> None:
    """Convert a checkpoint trained with the reference ST-CLIP code into stclip's safetensors format.

    Only tensors are read (torch's weights_only unpickler): a file that needs any other object is refused.
    Example: stclip import-reference jhmdb_split1_model_final.pth --out jhmdb-split1.safetensors --dataset jhmdb --split 1
    """
    from stclip_cli.weights.cards import build_model, load_card, save_checkpoint
    from stclip_cli.weights.reference import load_reference_weights, read_reference

    if dataset is not None and dataset.lower() not in ("jhmdb", "ucf24", "ava"):
        raise StclipError(f"--dataset must be jhmdb, ucf24 or ava (got {dataset[:40]!r})")
    if split is not None and split < 0:
        raise StclipError(f"--split must be a split number of at least 0 (got {split})")
    if out.exists():
        raise StclipError(f"{out} exists; stclip never replaces a file it did not write in this run: choose another --out")
    from stclip_cli.sinks.destinations import check_writable, plan_file, read_sources

    check_writable(out)
    plan_file(out, "--out", reads=read_sources([("REFERENCE", reference),
                                                 ("--model", model if model.endswith((".yaml", ".yml")) else None)]))
    card = load_card(model)
    if card.kind != "stclip":
        raise StclipError(f"--model {model} is a training-free baseline; a reference checkpoint needs an ST-CLIP card")
    weights = read_reference(reference)
    net = build_model(card.replace(pretrained="none"))  # shapes only: the frozen CLIP comes from the card's tag at use
    try:
        load_reference_weights(net, weights)
    except StclipError as err:  # the names and shapes inside: said with the file they come from
        raise StclipError(f"{reference}: {err}") from None
    save_checkpoint(out, net, card, {"dataset": dataset and dataset.lower(), "split": split, "imported_from": str(reference), "step": None})
    console.print(f"wrote {out} ({card.name}, {sum(p.numel() for p in net.parameters() if p.requires_grad):,} trainable weights)")


@app.command("eval")
@friendly
def evaluate(
    dataset: Optional[str] = typer.Option(None, help="jhmdb, ucf24 or ava", show_default="the checkpoint's"),
    split: Optional[str] = typer.Option(None, help="label split number, or all (every class)", show_default="the checkpoint's"),
    data_root: Optional[Path] = typer.Option(None, help="dataset folder", show_default="$STCLIP_DATA/<dataset> or ~/.cache/stclip/data/<dataset>"),
    checkpoint: Optional[str] = typer.Option(None, help="a `stclip train` checkpoint file or hf-hub:ORG/REPO", show_default="the newest runs/*/final.safetensors"),
    model: str = typer.Option("stclip", help="stclip, baseline, baseline-crop or a model card"),
    clip_weights: Optional[Path] = typer.Option(None, help="local CLIP weights file"),
    gt_boxes: bool = typer.Option(False, "--gt-boxes", help="score ground-truth person boxes instead of detections", metavar=""),
    boxes: Optional[Path] = typer.Option(None, help="persons: a folder of per-video boxes files (<video>.json, as detect --boxes reads) or the dataset's detections file"),
    detector: Optional[str] = typer.Option(None, help="persons: ultralytics person detector", show_default="the dataset's detections when it has them, else yolo11n.pt"),
    person_conf: float = typer.Option(0.25, help="detector confidence threshold"),
    single_action: bool = typer.Option(False, "--single-action", help="soft voting over each video", metavar=""),
    subset: str = typer.Option("test", help="test: the unseen classes; train: the seen classes"),
    pool: Optional[str] = typer.Option(None, help="jhmdb/ucf24 test videos: official (the split's videos in the official test half, the reference's) or all (both halves)", show_default="official"),
    classes: Optional[str] = typer.Option(None, help='with --pred: score these classes, e.g. "clap,sit,wave"', show_default="the split's, else every GT class"),
    test_boxes: Optional[str] = typer.Option(None, help="detections scored per frame: top3 (the 3 best, no threshold: the reference's) or fp-filter (the paper's false-positive filter)", show_default="jhmdb top3, others fp-filter"),
    score: Optional[str] = typer.Option(None, help="a detection's score: prob-x-det (action probability x detector score: the reference's) or prob", show_default="prob-x-det"),
    fp_margin: Optional[float] = typer.Option(None, help="margin of --test-boxes fp-filter", show_default="jhmdb 0.001, others 0.7"),
    max_persons: Optional[int] = typer.Option(None, help="score at most this many detections per frame", show_default="top3: 3, fp-filter: no cap"),
    batch_size: Optional[int] = typer.Option(None, min=1, help="keyframes scored per forward pass", show_default="8 on a GPU, 1 on CPU"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:i"),
    half: bool = typer.Option(False, help="bf16 on GPU", metavar=""),
    int8: bool = typer.Option(False, "--int8", help="int8 CPU path: the model 2.5-3x faster, probabilities within ~3e-3 of fp32; kept in ~/.cache/stclip after the first run (see README, Speed)", metavar=""),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the result JSON here", show_default="next to the checkpoint"),
    pred: Optional[Path] = typer.Option(None, help="evaluate this prediction file (detect JSON or AVA CSV) without a model"),
    gt: Optional[Path] = typer.Option(None, help="ground truth for --pred (J-HMDB JSON, detect-style JSON or AVA CSV)"),
    excluded: Optional[Path] = typer.Option(None, help="AVA excluded timestamps CSV (with --pred CSV)"),
    label_map: Optional[Path] = typer.Option(None, help="AVA action list pbtxt (with --pred CSV)"),
    quiet: bool = typer.Option(False, help="no progress bar", metavar=""),
) -> None:
    """Frame mAP@0.5 on a split's unseen classes, or of an existing prediction file.

    Examples: stclip eval --gt-boxes ; stclip eval --dataset jhmdb --split 1 --model baseline ;
    stclip eval --dataset ucf24 --split 1 --model baseline --boxes boxes/ ;
    stclip eval --pred out.json --gt jhmdb_test_gt_min.json --dataset jhmdb --split 1
    """
    from stclip_cli.data.splits import parse_split
    from stclip_cli.sinks.destinations import plan_file, read_sources

    split = parse_split(split) if split is not None else None
    reads = read_sources([("--pred", pred), ("--gt", gt), ("--excluded", excluded), ("--label-map", label_map),
                          ("--boxes", boxes), ("--data-root", data_root), ("--checkpoint", checkpoint),
                          ("--clip-weights", clip_weights), ("--detector", detector),
                          ("--model", model if model.endswith((".yaml", ".yml")) else None)])
    if json_out is not None:
        plan_file(json_out, "--json", reads=reads)
    if pred is not None or gt is not None:
        if boxes is not None or detector is not None:
            raise StclipError("--boxes and --detector choose the persons a model scores; a --pred file is already scored")
        return _eval_files(pred, gt, excluded, label_map, json_out, dataset, split, subset, classes)
    if classes is not None:
        raise StclipError("--classes chooses the classes of a --pred file; a model is evaluated on --dataset/--split")
    from stclip_cli.weights.cards import card_for_checkpoint, load_card, read_metadata
    from stclip_cli.data import default_data_root, open_dataset, pool_option
    from stclip_cli.benchmark.evaluate import eval_protocol, evaluate_view
    from stclip_cli.pipeline import DetectConfig, assemble, build_pipeline
    from stclip_cli.benchmark.train import latest_run

    card = load_card(model)
    meta: dict = {}
    if card.kind == "stclip":
        from stclip_cli.weights.sources import resolve_checkpoint

        checkpoint = resolve_checkpoint(checkpoint) if checkpoint else latest_run()
        meta = read_metadata(checkpoint)
        card = card_for_checkpoint(checkpoint, None if model == "stclip" else card)
    dataset = (dataset or meta.get("dataset") or "").lower()
    split = split if split is not None else meta.get("split")
    if not dataset or split is None:
        raise StclipError("which benchmark? pass --dataset and --split (only a checkpoint records them)")
    protocol = eval_protocol(dataset, test_boxes, score, fp_margin, max_persons)
    recorded = meta.get("config", {}).get("options", {})
    options = pool_option(dataset, pool)  # never the training run's pool: the test protocol is chosen here
    from stclip_cli.benchmark.persons import boxes_file_option, eval_persons

    options.update(boxes_file_option(dataset, boxes, gt_boxes, detector))
    root = data_root or recorded.get("data_root")
    view = open_dataset(dataset, root, split, subset, **options)
    reads += read_sources([("--data-root", Path(root).expanduser() if root else default_data_root(dataset)),
                           ("--checkpoint", card.checkpoint)])
    target = json_out or (Path(card.checkpoint).with_name(f"eval-{subset}{'-gt' if gt_boxes else ''}{'-sa' if single_action else ''}.json")
                          if card.checkpoint else Path(f"eval-{dataset}-split{split}-{card.name}.json"))
    plan_file(target, "--json", reads=reads)  # before hours of evaluation, not after
    persons = eval_persons(view, gt_boxes, boxes, detector, person_conf, device, half)
    # the one pipeline detect runs, with the benchmark's classes, persons and test protocol
    config = DetectConfig(tuple(view.classes), model=model, checkpoint=str(card.checkpoint) if card.checkpoint else None,
                          clip_weights=str(clip_weights) if clip_weights else None, batch_size=batch_size,
                          single_action=single_action, device=device, half=half, int8=int8,
                          multi_label=view.multi_label, **protocol.detect_settings())
    from stclip_cli.benchmark.persons import FixedBoxes

    pipeline = build_pipeline(assemble(config, detector=False), detector=FixedBoxes({}))  # each video's persons replace it
    from rich.progress import Progress

    with Progress(console=console, disable=quiet) as progress:
        task = progress.add_task(f"eval {dataset} split {split}", total=len(view.videos))
        result = evaluate_view(view, pipeline.predictor, pipeline.info, persons, protocol,
                               on_video=lambda n: progress.advance(task, n))
    result.settings = {"dataset": dataset, "split": split, "subset": subset, "model": card.name,
                       "checkpoint": str(card.checkpoint) if card.checkpoint else None, "gt_boxes": gt_boxes,
                       "persons": persons.name, "single_action": single_action,
                       "precision": pipeline.info.precision,
                       "protocol": protocol.record(options.get("pool"), gt_boxes, result.coverage)}
    note(result.note())
    print_aps(result.aps, result.mean, f"{dataset} split {split} {subset} classes, frame mAP@0.5"
               f"{' (GT boxes)' if gt_boxes else ''}{' (soft voting)' if single_action else ''}")
    from stclip_cli.sinks.outputs import atomic_text

    atomic_text(target, json.dumps(result.to_dict(), indent=2))
    console.print(f"wrote {target}")


def _eval_files(pred: Optional[Path], gt: Optional[Path], excluded: Optional[Path], label_map: Optional[Path],
                json_out: Optional[Path], dataset: Optional[str] = None, split: Optional[int] = None,
                subset: str = "test", classes: Optional[str] = None) -> None:
    """--pred/--gt: AVA CSVs by the standard AVA rules, or a detect JSON against a GT JSON, on the chosen classes."""
    from stclip_cli.data.splits import JHMDB_CLASSES, get_split
    from stclip_cli.benchmark.metrics import ava_evaluate, evaluate_json, mean_ap

    if pred is None or gt is None:
        raise StclipError("--pred and --gt go together: pass both files")
    for path, flag in ((pred, "--pred"), (gt, "--gt"), (excluded, "--excluded"), (label_map, "--label-map")):
        if path is not None and path.is_dir():
            raise StclipError(f"{flag} {path} is a folder; give a file")
        if path is not None and not path.is_file():
            raise StclipError(f"file not found: {path} ({flag})")
    dataset = dataset.lower() if dataset else None
    from stclip_cli.benchmark.evaluate import eval_classes

    names, chosen = eval_classes(dataset, split, subset, classes)
    if pred.suffix.lower() == ".csv":
        scores = ava_evaluate(pred, gt, excluded, label_map, names)
        if label_map is not None:
            chosen = chosen.replace("of the ground truth", "of the label map")
    else:
        class_names = get_split(dataset, 1).all_classes if dataset else JHMDB_CLASSES
        scores = evaluate_json(pred, gt, names, class_names, label_split=dataset in ("jhmdb", "ucf24"))
    aps = scores.aps
    mean = mean_ap(aps)
    without_gt = [n for n, ap in aps.items() if math.isnan(ap)]
    averaged = len(aps) - len(without_gt)
    console.print(f"note: averaging {averaged} class{'' if averaged == 1 else 'es'}, {chosen}"
                  + (f"; no ground truth for {', '.join(without_gt)} (left out of the mean)" if without_gt else "")
                  + (f"; no predictions for {', '.join(scores.unpredicted)}" if scores.unpredicted else ""),
                  markup=False, highlight=False, soft_wrap=True)
    console.print(f"note: {scores.note()}", markup=False, highlight=False, soft_wrap=True)
    if scores.left_out:
        console.print(f"note: {len(scores.left_out)} video(s) of {pred.name} are not among the {scores.videos} test "
                      f"video(s) of {gt.name} and were not scored: {', '.join(scores.left_out[:5])}"
                      f"{', ...' if len(scores.left_out) > 5 else ''}", markup=False, highlight=False, soft_wrap=True)
    print_aps(aps, mean, f"{pred.name} vs {gt.name}, frame mAP@0.5")
    if json_out is not None:
        from stclip_cli.sinks.outputs import atomic_text

        clean = {k: (None if math.isnan(v) else v) for k, v in aps.items()}
        atomic_text(json_out, json.dumps({"map": None if math.isnan(mean) else mean, "ap": clean,
                                          "classes": chosen, "videos": scores.videos, "frames": scores.frames,
                                          "videos_without_predictions": scores.without_predictions,
                                          "left_out_videos": scores.left_out}, indent=2))


@app.command()
@friendly
def plot(
    result: Path = typer.Argument(..., help="a per-video JSON written by `stclip detect`"),
    out: Optional[Path] = typer.Option(None, "--out", help="the PNG to write", show_default="RESULT with the suffix .png"),
    quiet: bool = typer.Option(False, help="no timeline in the terminal", metavar=""),
) -> None:
    """Draw the timeline of a detect result: each person's top action over time, one lane per track (a PNG).

    Example: stclip plot clip.stclip.json --out clip.timeline.png
    """
    from stclip_cli.sinks.destinations import plan_file, read_sources
    from stclip_cli.sinks.timeline import read_result, timeline_text, write_png

    target = out if out is not None else result.with_suffix(".png")
    if target.suffix.lower() != ".png" and not target.is_dir():
        raise StclipError(f"--out writes a PNG image: name the file .png (got {target})")
    plan_file(target, "--out", reads=read_sources([("RESULT", result)]))  # writable, a file, not the input
    timeline = read_result(result)
    write_png(timeline, target)
    if not quiet:
        console.print(timeline_text(timeline, width=max(20, min(100, console.width - 14))))
    console.print(f"wrote {target}", highlight=False)


@app.command("app")
@friendly
def app_command(
    host: str = typer.Option("127.0.0.1", help="address to listen on; 0.0.0.0 lets other machines in"),
    port: int = typer.Option(7860, min=1, max=65535, help="port to listen on"),
    model: str = typer.Option(DEFAULT("model"), help="the model card chosen at start (the page can choose another)"),
    checkpoint: Optional[str] = typer.Option(None, help="ST-CLIP weights: a file or hf-hub:ORG/REPO", show_default="$STCLIP_CHECKPOINT"),
    clip_weights: Optional[Path] = typer.Option(None, help="local CLIP weights file (offline use)"),
    detector: str = typer.Option(DEFAULT("detector"), help="ultralytics person detector: name, .pt path or .yaml"),
    boxes: Optional[Path] = typer.Option(None, help="precomputed person boxes applied to every video (detect JSON or COCO-results JSON)"),
    device: str = typer.Option(DEFAULT("device"), help="auto, cpu, cuda or cuda:i"),
    quiet: bool = typer.Option(False, help="no start-up messages", metavar=""),
) -> None:
    """Try it in a browser: upload a video, name the actions, watch the annotated video, timeline and events
    (pip install "stclip\\[app]"). Local only by default; never a public share link.

    Example: stclip app --checkpoint runs/jhmdb-split1/final.safetensors
    """
    for path, flag in ((clip_weights, "--clip-weights"), (boxes, "--boxes")):
        if path is not None and not path.is_file():
            raise StclipError(f"file not found: {path} ({flag})")
    import importlib.util

    from stclip_cli.app import AppSettings, build_app

    settings = AppSettings(model, checkpoint, str(clip_weights) if clip_weights else None, detector,
                           str(boxes) if boxes else None, device, host, port, quiet)
    if importlib.util.find_spec("gradio") is None:
        raise StclipError('stclip app needs Gradio: pip install "stclip[app]"')
    build_app(settings).launch(block=True)


def main() -> None:
    """Entry point for `python -m stclip_cli`."""
    app()


if __name__ == "__main__":
    main()
    sys.exit(0)
