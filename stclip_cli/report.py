"""What the command line shows: one console on standard error, the one-line error policy for every command, progress
bars and the end-of-run tables. The commands (cli.py) parse and call; this module reports."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stclip_cli.errors import OutputClosed, StclipError, Terminated

LOG_WIDTH = 400
SIGPIPE_EXIT = 1  # a closed pipe ends the run quietly with 1, as click and rich end theirs (Python's own advice)


def stderr_console() -> Console:
    """Standard error's console. ":abc:" in a name or URL is text, not an emoji code; in a log file or a pipe (no
    terminal, no $COLUMNS) tables take the width they need instead of rich's 80 columns, which cut them short."""
    import os

    wide = not sys.stderr.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=True, emoji=False, width=LOG_WIDTH if wide else None)


console = stderr_console()


def friendly(command: Callable) -> Callable:
    """Turn StclipError into one red line and exit 1, Ctrl-C into exit 130 and SIGTERM into exit 143 (both after
    every output is cleaned up); never a traceback for bad input."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _on_sigterm(_terminate)
        try:
            return command(*args, **kwargs)
        except (OutputClosed, BrokenPipeError):  # `stclip ... | head -1`: stop quietly, outputs cleaned up
            _stdout_to_null()
            raise typer.Exit(SIGPIPE_EXIT) from None
        except StclipError as err:  # escaped: "[x1, y1, x2, y2]" in a message is text, not rich markup
            console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except Terminated:
            console.print("[yellow]terminated[/yellow]")
            raise typer.Exit(143) from None
        finally:
            _on_sigterm(previous)

    return wrapper


def _stdout_to_null() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush does not report the closed pipe."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno() if sys.stdout is not None else 1)
        os.close(null)
    except (OSError, ValueError):
        pass


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def _on_sigterm(handler: Any) -> Any:
    """Install a SIGTERM handler (main thread only, as Python requires); returns the previous one."""
    import signal
    import threading

    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def warn(text: str) -> None:
    """One yellow ``warning:`` line."""
    console.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


def note(text: str) -> None:
    """One yellow ``note:`` line."""
    console.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


def run_one(predictor, video: Path, sinks: list, info, quiet: bool):
    """One video under a rich progress bar (frames, frames/s, ETA)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn(video.name), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]} frames/s"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task(video.name, total=None, fps="-")

        def started(vinfo) -> None:
            progress.update(task, total=vinfo.num_frames or None)

        def advanced(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[0].speed
            progress.update(task, fps=f"{speed:.1f}" if speed else "-")

        summary = predictor.run(video, sinks, info, advanced, started)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    return summary


def timeline_collector(quiet: bool, sinks: list) -> tuple[Any, bool]:
    """What keeps the video's timeline for the end-of-run summary when a terminal will show it (else None), and
    whether a sink already feeds it: the --plot sink's own log when there is one (each keyframe logged once)."""
    if quiet or not console.is_terminal:
        return None, False
    from stclip_cli.sinks.timeline import TimelineCollector, TimelineSink

    plot = next((sink for sink in sinks if isinstance(sink, TimelineSink)), None)
    return (plot.collector, True) if plot is not None else (TimelineCollector(), False)


@contextlib.contextmanager
def corpus_progress(out: Console, quiet: bool, total: int, pool: tuple[int, float, float]):
    """A rich bar over the videos (done, failed, frames/s over the run); yields the callback each result calls."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    actors, cpus, gpus = pool
    label = f"{actors} actor{'s' * (actors > 1)} ({cpus:g} CPU{f', {gpus:g} GPU' if gpus else ''} each)"
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
               TextColumn("{task.fields[fps]} frames/s"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=out, disable=quiet) as progress:
        task = progress.add_task("videos", total=total, failed=0, fps="-")
        start, frames, failed = time.perf_counter(), 0, 0

        def on_result(result) -> None:
            nonlocal frames, failed
            frames += result.frames
            failed += result.status == "failed"
            progress.update(task, advance=1, failed=failed, fps=f"{frames / (time.perf_counter() - start):.1f}")

        yield on_result


def print_summary(summaries, actions: list[str], timelines=()) -> None:
    """End-of-run table: frames, person detections, tracks, top actions, outputs; then each video's timeline."""
    table = Table(title="stclip detect")
    for col in ("video", "frames", "scored", "person detections", "tracks", "top actions", "outputs"):
        table.add_column(col)
    for s, plan in summaries:
        top = ", ".join(f"{name} {score:.2f}" for name, score in s.top_actions(actions)) or "nobody found"
        outputs = ", ".join(target.name for target in plan.values())
        table.add_row(s.video.name, str(s.frames), str(s.keyframes), str(s.persons), str(len(s.tracks)) if s.tracks else "-", top, outputs)
    console.print(table)
    if any(timelines):
        from stclip_cli.sinks.timeline import timeline_text

        for collector in filter(None, timelines):
            console.print(timeline_text(collector.timeline(), width=max(20, min(100, console.width - 14))))


def print_events(sinks: list) -> None:
    """The summary's longest events (track, action, from, to, peak), when --events was asked."""
    from stclip_cli.sinks.events import longest

    found = longest(event for sink in sinks for event in sink.events)
    if not sinks:
        return
    if not found:
        console.print("events: none (no tracked person held an action long enough; see --event-threshold, --event-min)",
                      highlight=False, soft_wrap=True, markup=False)
        return
    table = Table(title="longest events")
    for col in ("video", "track", "action", "from (s)", "to (s)", "peak"):
        table.add_column(col)
    for e in found:
        table.add_row(escape(Path(e.video).name), f"#{e.track_id}", escape(e.action), f"{e.start:.2f}", f"{e.end:.2f}",
                      f"{e.peak_score:.2f}")
    console.print(table)


def run_with_progress(trainer, quiet: bool) -> Path:
    """Trainer.run under a rich progress bar showing loss, lr, it/s and ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if quiet:
        return trainer.run()
    columns = [TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
               TextColumn("lr {task.fields[lr]:.2e}"), TextColumn("{task.fields[its]} it/s"), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=trainer.cfg.iterations, completed=trainer.step, loss=math.nan, lr=0.0, its="-")

        def on_step(step: int, row: dict) -> None:
            fields = {"loss": row["loss"], "lr": row["lr"]}
            if "it_s" in row:
                fields["its"] = f"{row['it_s']:.2f}"
            progress.update(task, completed=step, **fields)

        return trainer.run(on_step)


def print_aps(aps: dict, mean: float, title: str) -> None:
    """Rich table of per-class AP and the mean."""
    table = Table(title=title)
    table.add_column("class")
    table.add_column("AP", justify="right")
    for name, ap in aps.items():
        table.add_row(name, "no GT" if math.isnan(ap) else f"{100 * ap:.2f}")
    table.add_row("[b]mean[/b]", "-" if math.isnan(mean) else f"[b]{100 * mean:.2f}[/b]")
    Console().print(table)
