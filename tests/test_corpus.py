"""`stclip detect` on the Ray engine: a local Ray (2 CPUs, started once for this module, its files in the test's temp
folder), the tiny model, synthetic videos and one bad file. Outputs equal the single-process run's, the Parquet
dataset holds every row, the bad video is in the failures table, and a re-run does no work on finished videos."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import av
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from conftest import detect, write_video
from stclip_cli.corpus import engine as corpus
from stclip_cli.corpus import inputs as corpus_inputs
from stclip_cli.weights.cards import build_model, card_for_checkpoint, load_card, save_checkpoint
from stclip_cli.cli import app
from stclip_cli.corpus.engine import cli_uri as _cli_uri
from stclip_cli.corpus.engine import (FAILURES_NAME, Resources, VideoWorker, decode_job, encode_job, plan_corpus,
                               pool_size)
from stclip_cli.pipeline import Assembly, DetectConfig
from stclip_cli.corpus.inputs import VideoRef
from stclip_cli.core.detection import BoxesFile
from stclip_cli.errors import StclipError
from stclip_cli.records import ModelInfo
from stclip_cli.sinks.rows import RowsSink

runner = CliRunner()
ACTIONS = "brush teeth,fishing,sit"
FRAMES = {"a.mp4": 8, "b.mp4": 12, "cams/c.mp4": 6, "cams/d.mp4": 10}
PERSONS = 2


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One local Ray for the module: 2 CPUs, its session files under the test's temp folder, shut down at the end."""
    with corpus.ray_session(None, num_cpus=2, temp_dir=str(tmp_path_factory.mktemp("ray"))):
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Four synthetic videos (two in a subfolder), a text file named .mp4, a tiny checkpoint and boxes for 2 persons."""
    root = tmp_path_factory.mktemp("corpus")
    folder = root / "videos"
    (folder / "cams").mkdir(parents=True)
    for name, n in FRAMES.items():
        write_video(folder / name, n_frames=n)
    (folder / "bad.mp4").write_text("not a video\n" * 20)
    torch.manual_seed(0)
    card = load_card("tiny-test")
    checkpoint = root / "tiny.safetensors"
    save_checkpoint(checkpoint, build_model(card), card, {"step": 0})
    boxes = root / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [x, 8, 30, 40], "score": s}
                                 for f in range(max(FRAMES.values())) for x, s in ((10, 0.9), (50, 0.7))]))
    return {"folder": folder, "checkpoint": checkpoint, "boxes": boxes}


def model_args(data: dict) -> list[str]:
    return ["--actions", ACTIONS, "--model", "tiny-test", "--checkpoint", data["checkpoint"], "--boxes", data["boxes"]]


def lines(result) -> list[str]:
    return [line for line in result.output.strip().splitlines() if line.strip()]


def mtimes(*folders: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for folder in folders for p in folder.iterdir() if not p.name.startswith("_")}


def assert_same(a, b, path="") -> None:
    """Parsed JSON equal, numbers within the last printed digit (torch's CPU kernels may round a score differently)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert a == pytest.approx(b, abs=1.5e-5), path
    else:
        assert a == b, path


@pytest.mark.slow
def test_corpus_equals_single_process_has_every_row_records_the_bad_video_and_resumes(ray_local, data, tmp_path,
                                                                                   tmp_path_factory):
    folder, out = data["folder"], tmp_path / "out"
    ray_args = ["--json", f"{out}/json/", "--video", f"{out}/mp4/", "--parquet", f"{out}/rows/", "--actors", "2",
                "--cpus-per-actor", "1"]
    result = detect(folder, *model_args(data), *ray_args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    summary = next(line for line in lines(result) if line.startswith("5 videos:"))
    assert summary.startswith("5 videos: 4 done, 0 already done (skipped), 1 failed; 36 frames in ")
    assert lines(result)[-1] == f"error: {folder}/bad.mp4: not a video FFmpeg can read (Invalid data found when processing input)"

    # the single-process run, on one thread as each actor (--cpus-per-actor 1) runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = detect(*(folder / name for name in FRAMES), *model_args(data), "--json", f"{tmp_path}/single/", "--quiet")
    finally:
        torch.set_num_threads(threads)
    assert single.exit_code == 0, single.output
    stems = sorted(Path(name).stem for name in FRAMES)
    assert sorted(p.stem for p in (out / "json").iterdir()) == sorted(p.stem for p in (tmp_path / "single").iterdir()) == stems
    outputs = {stem: json.loads((out / "json" / f"{stem}.json").read_text()) for stem in stems}
    for stem in stems:
        assert_same(outputs[stem], json.loads((tmp_path / "single" / f"{stem}.json").read_text()), stem)

    # the annotated videos: every frame, the source's size
    for name, n in FRAMES.items():
        with av.open(str(out / "mp4" / f"{Path(name).stem}.mp4")) as container:
            assert [(f.width, f.height) for f in container.decode(video=0)] == [(96, 64)] * n

    # one Parquet dataset (the _ side files are not part of it): every person x action of every scored frame
    table = pq.read_table(out / "rows").sort_by([("video", "ascending"), ("frame", "ascending"), ("person", "ascending")])
    assert table.num_rows == sum(FRAMES.values()) * PERSONS * len(ACTIONS.split(","))
    expected = [(data_["video"], f["index"], k, *p["box"], a, s) for data_ in sorted(outputs.values(), key=lambda d: d["video"])
                for f in data_["frames"] for k, p in enumerate(f["persons"]) for a, s in p["scores"].items()]
    got = sorted(table.select(["video", "frame", "person", "x1", "y1", "x2", "y2", "action", "score"]).to_pylist(),
                 key=lambda r: (r["video"], r["frame"], r["person"]))
    for row, want in zip(got, expected):
        assert (row["video"], row["frame"], row["person"], row["action"]) == (want[0], want[1], want[2], want[7])
        assert [row[c] for c in ("x1", "y1", "x2", "y2")] == pytest.approx(list(want[3:7]), abs=0.01)
        assert row["score"] == pytest.approx(want[8], abs=1e-5)
    assert set(table.column("model").to_pylist()) == {"tiny-test"}

    failures = json.loads((out / "rows" / FAILURES_NAME).read_text())
    assert failures == [{"video": f"{folder}/bad.mp4", "error": lines(result)[-1][len("error: "):]}]

    # a re-run, as a user runs it (a fresh process starting its own Ray): finished videos are skipped and untouched,
    # the failed one is tried again (a failure may be transient); stderr holds stclip's lines only, no Ray banner or log
    before = mtimes(out / "json", out / "mp4", out / "rows")
    ray_tmp = tmp_path_factory.mktemp("rt")  # short: Ray's socket paths under it must stay within 107 bytes
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": os.pathsep.join(sys.path)}
    again = subprocess.run([sys.executable, "-m", "stclip_cli", "detect", str(folder), *map(str, model_args(data)),
                            *ray_args], capture_output=True, text=True, timeout=300, env=env)
    shown = [line for line in again.stderr.splitlines() if line.strip()]
    assert again.returncode == 1 and again.stdout == "" and len(shown) == 3, again.stderr
    assert shown[0].startswith("1 actor (1 CPU each)") and " 1/1 1 failed " in shown[0]
    assert shown[1].startswith("5 videos: 0 done, 4 already done (skipped), 1 failed; 0 frames in ")
    assert shown[2] == lines(result)[-1]
    assert list(ray_tmp.iterdir())  # Ray's session went where RAY_TMPDIR says
    assert mtimes(out / "json", out / "mp4", out / "rows") == before

    # the finished videos alone: no work at all (Ray is not even asked)
    manifest = tmp_path / "good.txt"
    manifest.write_text("".join(f"{folder}/{name}\n" for name in FRAMES))
    done = detect(f"@{manifest}", *model_args(data), *ray_args)
    assert done.exit_code == 0, done.output
    assert lines(done) == [f"4 videos: 0 done, 4 already done (skipped), 0 failed; rows in {out}/rows"]
    assert mtimes(out / "json", out / "mp4", out / "rows") == before
    assert json.loads((out / "rows" / FAILURES_NAME).read_text()) == []


def settings_for(data: dict) -> Assembly:
    card = card_for_checkpoint(data["checkpoint"])
    config = DetectConfig(tuple(ACTIONS.split(",")), boxes=str(data["boxes"]), device="cpu")
    return Assembly(config, card, None, BoxesFile(data["boxes"]))


@pytest.mark.slow
def test_remote_video_is_named_by_its_uri(ray_local, data, tmp_path, monkeypatch):
    store = tmp_path / "store"
    (store / "bucket" / "cam").mkdir(parents=True)
    write_video(store / "bucket" / "cam" / "a.mp4", n_frames=5)
    fs = pafs.SubTreeFileSystem(str(store), pafs.LocalFileSystem())
    monkeypatch.setattr(corpus_inputs, "open_store", lambda uri: corpus_inputs._Store(fs, "mem://"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr("tempfile.tempdir", None)
    refs, _ = corpus_inputs.find_videos(["mem://bucket/cam/"])
    jobs = plan_corpus(refs, {"json": f"{tmp_path}/json/"}, tmp_path / "rows")
    assert [t.path.name for t in jobs[0].plan.values()] == ["a.json", "a.parquet"]  # the stem, as for a local file
    settings = settings_for(data)
    worker = VideoWorker(settings, corpus.ray_remote_attempts(), threads=1)
    result = worker.run(json.loads(encode_job(jobs[0], {"run": 1})))
    assert (result.status, result.error, result.frames, result.rows) == ("done", "", 5, 5 * PERSONS * 3)
    assert json.loads((tmp_path / "json" / "a.json").read_text())["video"] == "mem://bucket/cam/a.mp4"
    assert set(pq.read_table(tmp_path / "rows" / "a.parquet").column("video").to_pylist()) == {"mem://bucket/cam/a.mp4"}
    assert list((tmp_path / "tmp").iterdir()) == []  # the local copy is gone


@pytest.mark.slow
def test_a_video_that_kills_its_worker_is_given_up_after_two_starts(ray_local, data, tmp_path):
    attempts = corpus.ray_remote_attempts()
    video = write_video(tmp_path / "a.mp4", n_frames=3)
    job = plan_corpus([VideoRef(str(video))], {"json": f"{tmp_path}/json/"}, tmp_path / "rows")[0]
    item = json.loads(encode_job(job, {}))
    import ray

    for _ in range(corpus.MAX_ATTEMPTS):  # two starts whose worker process died
        ray.get(attempts.start.remote(str(video)))
    result = VideoWorker(settings_for(data), attempts, threads=1).run(item)
    assert result.status == "failed" and result.error.startswith("the worker process died on it 2 times")
    assert not (tmp_path / "json").exists()


def test_a_worker_that_cannot_start_fails_each_video_with_the_reason(ray_local, data, tmp_path):
    video = write_video(tmp_path / "a.mp4", n_frames=3)
    job = plan_corpus([VideoRef(str(video))], {"json": f"{tmp_path}/json/"}, tmp_path / "rows")[0]
    settings = settings_for(data)
    broken = dataclasses.replace(settings, config=dataclasses.replace(settings.config, clip_weights=str(tmp_path / "gone.pt")))
    result = VideoWorker(broken, corpus.ray_remote_attempts(), threads=1).run(json.loads(encode_job(job, {})))
    assert result.status == "failed"
    assert result.error == f"the worker could not start: CLIP weights file not found: {tmp_path}/gone.pt (--clip-weights)"


def test_done_means_every_output_in_place_with_this_runs_stamp(tmp_path):
    video = write_video(tmp_path / "a.mp4", n_frames=3)
    job = plan_corpus([VideoRef(str(video), 10, 20)], {"json": f"{tmp_path}/json/"}, tmp_path / "rows")[0]
    stamp = job.stamp({"actions": ["clap"]})
    assert stamp["video"] == [str(video), 10, 20] and not job.done(stamp)
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "a.json").write_text("{}")
    assert not job.done(stamp)  # its rows are missing
    from stclip_cli.records import VideoInfo

    sink = RowsSink(job.plan["parquet"], stamp=stamp)
    sink.open(VideoInfo(video, 96, 64, 10.0, 3, 0), ["clap"], ModelInfo("m", "b", None, "softmax"))
    sink.close()
    assert job.done(stamp)
    assert not job.done(job.stamp({"actions": ["wave"]}))  # other settings: not this run's rows
    settings = settings_for_boxes(tmp_path)
    def changed(**change) -> dict:
        return dataclasses.replace(settings, config=dataclasses.replace(settings.config, **change)).stamp()

    assert settings.stamp() == changed(batch_size=32)  # speed only
    assert settings.stamp() != changed(stride=2)
    assert decode_job(json.loads(encode_job(job, stamp))) == job


def settings_for_boxes(tmp_path: Path) -> Assembly:
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[]")
    return Assembly(DetectConfig(("clap",), model="tiny-test", boxes=str(boxes), device="cpu"), load_card("tiny-test"),
                    None, BoxesFile(boxes))


def test_plan_refuses_what_workers_cannot_write(tmp_path):
    video = write_video(tmp_path / "a.mp4", n_frames=3)
    with pytest.raises(StclipError, match="^the Ray engine's workers write files; standard output is not one"):
        plan_corpus([VideoRef(str(video))], {"json": "-"}, tmp_path / "rows")
    with pytest.raises(StclipError, match="^videos in an object store have no folder beside them"):
        plan_corpus([VideoRef("s3://bucket/a.mp4")], {"json": None}, tmp_path / "rows")
    plan = plan_corpus([VideoRef(str(video))], {"json": None}, tmp_path / "rows")[0].plan  # local: JSON beside it
    assert plan["json"].path == tmp_path / "a.stclip.json" and plan["parquet"].path == tmp_path / "rows" / "a.parquet"


@pytest.mark.parametrize("resources, cluster, device, expected", [
    (Resources(), {"CPU": 8}, "auto", (2, 4.0, 0.0)),
    (Resources(), {"CPU": 2}, "auto", (1, 2.0, 0.0)),
    (Resources(cpus=1), {"CPU": 2}, "auto", (2, 1.0, 0.0)),
    (Resources(), {"CPU": 16, "GPU": 4}, "auto", (4, 1.0, 1.0)),
    (Resources(gpus=0.5), {"CPU": 16, "GPU": 2}, "cuda", (4, 1.0, 0.5)),
    (Resources(), {"CPU": 16, "GPU": 4}, "cpu", (4, 4.0, 0.0)),
    (Resources(actors=8, cpus=1), {"CPU": 16}, "auto", (3, 1.0, 0.0)),  # never more actors than videos
])
def test_pool_size(resources, cluster, device, expected):
    assert pool_size(resources, cluster, device, videos=3 if resources.actors else 100) == expected


def test_pool_that_cannot_fit_this_machine_is_refused():
    with pytest.raises(StclipError, match=r"^3 actors x 2 CPUs need 6 CPUs; this machine has 2 \(lower --actors"):
        pool_size(Resources(actors=3), {"CPU": 2}, "auto", videos=3)
    assert pool_size(Resources(actors=3, address="auto"), {"CPU": 2}, "auto", videos=3) == (3, 2.0, 0.0)  # may grow


def test_cuda_needs_gpus_per_actor():
    with pytest.raises(StclipError, match="^--device cuda:1 with the Ray engine needs --gpus-per-actor above 0"):
        pool_size(Resources(gpus=0), {"CPU": 4, "GPU": 2}, "cuda:1", videos=3)


@pytest.mark.parametrize("argv, message", [
    (["--engine", "ray"], "error: the Ray engine writes a Parquet dataset of every scored row: give --parquet DIR/"),
    (["--engine", "local", "--actors", "2"], "error: --actors is an option of the Ray engine; drop it or --engine local"),
    (["--engine", "spark"], "error: --engine must be local or ray, not 'spark'"),
    (["--parquet", "{tmp}/rows/", "--json", "-"], "error: the Ray engine's workers write files; standard output is not "
                                                  "one (give a folder ending with /)"),
    (["--parquet", "{tmp}/rows/", "{tmp}/empty/"], "error: no videos in {tmp}/empty/ (video files end with .3gp, "),
])
def test_bad_ray_options_are_one_line_errors_before_ray_starts(data, tmp_path, argv, message):
    (tmp_path / "empty").mkdir()
    video = write_video(tmp_path / "a.mp4", n_frames=3)
    result = detect(video, *model_args(data), *(a.format(tmp=tmp_path) for a in argv))
    assert result.exit_code == 1 and len(lines(result)) == 1, result.output
    assert lines(result)[0].startswith(message.format(tmp=tmp_path))


def test_without_ray_stclip_imports_and_the_engine_says_how_to_get_it(data, tmp_path):
    video = write_video(tmp_path / "a.mp4", n_frames=3)
    code = ("import sys; sys.modules.update({'ray': None, 'pyarrow': None}); from stclip_cli.cli import app; "
            f"sys.argv = ['stclip', 'detect', {str(video)!r}, '--actions', 'a,b', '--parquet', 'rows/']; app()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr == 'error: the Ray engine needs Ray: pip install "stclip[ray]"\n'


def test_uris_typed_on_the_command_line_survive_typer():
    assert _cli_uri(str(Path("s3://bucket/cams/a.mp4"))) == "s3://bucket/cams/a.mp4"
    assert _cli_uri(str(Path("@gs://bucket/list.txt"))) == "@gs://bucket/list.txt"
    assert _cli_uri(str(Path("file:///data/a.mp4"))) == "file:///data/a.mp4"
    assert _cli_uri("clips/a.mp4") == "clips/a.mp4" and _cli_uri("s3://b/k") == "s3://b/k"


@pytest.mark.slow
def test_ray_noise_goes_to_the_log_and_our_lines_to_the_terminal(tmp_path):
    code = ("import os, sys; from pathlib import Path; from stclip_cli.corpus.engine import driver_output\n"
            f"with driver_output(Path({str(tmp_path / '_ray.log')!r})) as terminal:\n"
            "    os.write(2, b'[E core_worker.cc] noise\\n'); print('python noise', file=sys.stderr); terminal.write('ours\\n')\n"
            "print('after', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stderr == "ours\nafter\n"
    assert (tmp_path / "_ray.log").read_text() == "[E core_worker.cc] noise\npython noise\n"


@pytest.mark.slow
def test_ray_that_cannot_start_is_one_line(data, tmp_path):
    video = write_video(tmp_path / "a.mp4", n_frames=3)
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / ("x" * 80)), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "stclip_cli", "detect", str(video), *map(str, model_args(data)),
                           "--json", f"{tmp_path}/json/", "--parquet", f"{tmp_path}/rows/"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: cannot start Ray on this machine: validate_socket_filename failed: AF_UNIX ")


def test_an_interrupted_run_leaves_no_temporary_file(ray_local, data, tmp_path, monkeypatch):
    """Ray kills the actors mid-write when the run is interrupted; the driver removes what they left (was left)."""
    from stclip_cli.sinks.destinations import Destination

    video = write_video(tmp_path / "a.mp4", n_frames=3)
    prepared = corpus.prepare([str(video)], {"json": f"{tmp_path}/json/"}, tmp_path / "rows")
    other = Destination(json_target(tmp_path / "json" / "a.b.json"))  # another output's temporary file stays
    other.temp_path()

    def killed_mid_write(settings, jobs, stamps, pool, on_result):
        for target in jobs[0].plan.values():
            Destination(target).temp_path()
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus, "run_corpus", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        corpus.execute(prepared, settings_for(data), Resources(actors=1, cpus=1), lambda *a: nullcontext(print))
    assert [p.name for p in (tmp_path / "json").iterdir()] == [other.temp.name]
    assert list((tmp_path / "rows").iterdir()) == []


def json_target(path: Path):
    from stclip_cli.sinks.destinations import classify

    return classify(path, "--json", in_new_folder=True)


@pytest.mark.slow
def test_sigterm_still_reaches_stclip_once_ray_runs(tmp_path_factory):
    """Ray's C++ core installs a handler that dumps a stack and aborts on SIGTERM; stclip's own must win."""
    code = ("import os, signal, sys; from stclip_cli.corpus.engine import ray_session\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('ours', file=sys.stderr), sys.exit(143)))\n"
            f"with ray_session(None, num_cpus=1, temp_dir={str(tmp_path_factory.mktemp('rs'))!r}):\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143 and "ours" in proc.stderr and "SIGTERM received" not in proc.stderr, proc.stderr


def test_unreachable_cluster_fails_at_once():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StclipError, match=rf"^cannot join the Ray cluster at ray://127.0.0.1:{port}: connection refused$"):
        corpus.check_reachable(f"ray://127.0.0.1:{port}")
    corpus.check_reachable("auto")  # Ray answers that one itself, at once


def test_a_video_named_like_the_runs_own_files_is_refused(tmp_path):
    video = tmp_path / "_failures.mp4"
    video.write_bytes(b"")
    with pytest.raises(StclipError, match="the run's own _failures.json"):
        plan_corpus([VideoRef(str(video))], {"json": f"{tmp_path}/out/"}, tmp_path / "out")


def test_failures_table_is_written_when_its_folder_was_never_made(tmp_path):
    """Every video failed before any rows were written: the table's folder did not exist, and its error hid theirs."""
    path = corpus.write_failures(tmp_path / "rows", [("a.mp4", "video not found: a.mp4")])
    assert json.loads(path.read_text()) == [{"video": "a.mp4", "error": "video not found: a.mp4"}]


def test_the_run_log_is_never_written_through_a_link_or_into_a_fifo(tmp_path):
    """_ray.log was opened with open(path, "w"): a link there truncated the file it pointed to."""
    victim = tmp_path / "thesis.txt"
    victim.write_text("years of work")
    (tmp_path / "rows").mkdir()
    link = tmp_path / "rows" / corpus.LOG_NAME
    link.symlink_to(victim)
    with pytest.raises(StclipError, match="is not a plain file"):
        corpus.open_log(link)
    assert victim.read_text() == "years of work"
    link.unlink()
    os.mkfifo(link)
    with pytest.raises(StclipError, match="is not a plain file"):
        corpus.open_log(link)
    link.unlink()
    link.write_text("the last run's log")
    os.close(corpus.open_log(link))
    assert link.read_text() == ""


def test_events_on_ray_go_to_their_files_and_a_table_beside_the_rows(ray_local, data, tmp_path):
    video = write_video(tmp_path / "a.mp4", n_frames=12)
    job = plan_corpus([VideoRef(str(video))], {"json": f"{tmp_path}/json/", "events": f"{tmp_path}/events/"},
                      tmp_path / "rows")[0]
    assert job.plan["event_rows"].path == tmp_path / "rows" / "_events" / "a.parquet"
    settings = settings_for(data)
    config = dataclasses.replace(settings.config, track=True, event_threshold=0.0, event_min=0.0)
    worker = VideoWorker(dataclasses.replace(settings, config=config), corpus.ray_remote_attempts(), threads=1)
    result = worker.run(json.loads(encode_job(job, {"run": 1})))
    assert result.status == "done", result.error
    events = json.loads((tmp_path / "events" / "a.events.json").read_text())["events"]
    table = pq.read_table(tmp_path / "rows" / "_events" / "a.parquet")
    assert len(events) > 0 and table.num_rows == len(events)
    assert table.column("action").to_pylist() == [e["action"] for e in events]
    assert table.column("track_id").to_pylist() == [e["track_id"] for e in events]
