"""A user's files are safe: outputs never replace an input or what is not ours, symlinks/devices/FIFOs/stdout are
written as Unix tools write them, the umask is followed, and faults (disk full, SIGTERM) leave nothing behind."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from conftest import detect, one_line_error
from stclip_cli.cli import app
from stclip_cli.sinks.destinations import plan_outputs
from stclip_cli.errors import StclipError

runner = CliRunner()
ACTIONS = "clap,wave"


@pytest.fixture
def boxes(tmp_path) -> Path:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 30, 40], "score": 0.9} for f in range(400)]))
    return path


def args(checkpoint: Path, boxes: Path) -> list[str]:
    return ["--actions", ACTIONS, "--model", "tiny-test", "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--quiet"]


def stclip(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stclip_cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=300, **kwargs)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: kind, size, mtime and, for links, the target."""
    out = {}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        link = os.readlink(path) if path.is_symlink() else None
        out[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns, link)
    return out


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".part" in p.name or p.name.endswith(".tmp")]



def test_folder_output_never_writes_over_the_input(tmp_path, make_video, checkpoint, boxes, monkeypatch):
    video = make_video(tmp_path, n_frames=4)
    before = video.read_bytes()
    monkeypatch.chdir(tmp_path)
    line = one_line_error(detect("clip.mp4", *args(checkpoint, boxes), "--video", "."))
    assert "would write over the input" in line and "clip.mp4" in line
    assert video.read_bytes() == before and not leftovers(tmp_path)
    link = tmp_path / "alias.mp4"
    link.symlink_to(video)  # another name for the input is the input too
    assert "would write over the input" in one_line_error(detect(video, *args(checkpoint, boxes), "--video", link))


def test_same_file_names_from_different_folders_get_distinct_outputs(tmp_path, make_video, checkpoint, boxes):
    for cam in ("cam1", "cam2"):
        (tmp_path / cam).mkdir()
        make_video(tmp_path / cam, n_frames=3, size=(96, 64) if cam == "cam1" else (80, 48))
    out = tmp_path / "out"
    result = detect(tmp_path / "cam1" / "clip.mp4", tmp_path / "cam2" / "clip.mp4", *args(checkpoint, boxes), "--json", f"{out}/")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["cam1-clip.json", "cam2-clip.json"]
    assert json.loads((out / "cam2-clip.json").read_text())["width"] == 80
    with pytest.raises(StclipError, match="given twice"):
        plan_outputs([tmp_path / "cam1" / "clip.mp4"] * 2, {"json": f"{out}/"})


def test_symlink_is_written_through_to_its_target(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=3)
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    result = detect(video, *args(checkpoint, boxes), "--json", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["num_frames"] == 3 and not leftovers(tmp_path)


@pytest.mark.slow
def test_symlink_to_stdout_and_dash_reach_stdout(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=3)
    link = tmp_path / "to-stdout.json"
    link.symlink_to("/dev/stdout")
    proc = stclip("detect", video, *args(checkpoint, boxes), "--json", link)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_frames"] == 3 and link.is_symlink()
    proc = stclip("detect", video, *args(checkpoint, boxes), "--json", "-")
    assert proc.returncode == 0 and json.loads(proc.stdout)["num_frames"] == 3
    proc = stclip("detect", video, *args(checkpoint, boxes), "--csv", "-")
    assert proc.returncode == 0 and len(proc.stdout.strip().splitlines()) == 1 + 3 * 2  # the header, then the rows
    assert not (tmp_path / "clip.stclip.json").exists()


def test_fifo_reader_gets_the_output(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=3)
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    result = detect(video, *args(checkpoint, boxes), "--json", fifo)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert json.loads(received[0])["num_frames"] == 3 and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not leftovers(tmp_path)


def test_fifo_takes_a_fragmented_mp4(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=5)
    fifo = tmp_path / "video.mp4"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = detect(video, *args(checkpoint, boxes), "--video", fifo)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(received[0])
    with av.open(str(copy)) as container:
        assert len(list(container.decode(video=0))) == 5


def test_devices_are_written_directly(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=3)
    assert detect(video, *args(checkpoint, boxes), "--json", "/dev/null").exit_code == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    line = one_line_error(detect(video, *args(checkpoint, boxes), "--json", "/dev/full"))
    assert line == "error: cannot write /dev/full: no space left on device"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.slow
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, make_video, checkpoint, boxes, umask, mode):
    video = make_video(tmp_path, n_frames=3)
    out = tmp_path / "out"
    out.mkdir()
    proc = stclip("detect", video, *args(checkpoint, boxes), "--json", out / "a.json", "--csv", out / "a.csv",
                  "--video", out / "a.mp4", preexec_fn=lambda: os.umask(umask))
    assert proc.returncode == 0, proc.stderr
    for name in ("a.json", "a.csv", "a.mp4"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == mode, name


def test_a_replaced_file_keeps_its_permissions(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=3)
    out = tmp_path / "out.json"
    out.write_text("old")
    out.chmod(0o640)
    assert detect(video, *args(checkpoint, boxes), "--json", out).exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640 and json.loads(out.read_text())["num_frames"] == 3


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the umask from /proc (Linux)")
def test_the_umask_is_read_without_changing_it(monkeypatch):
    """Reading it by setting it to 0 for an instant gave files that other threads made then the wrong mode."""
    from stclip_cli.sinks.destinations import current_umask

    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *_: pytest.fail("the process umask was changed"))
        assert current_umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(previous)


def test_a_file_reaches_the_disk_before_its_name_does(tmp_path, monkeypatch):
    """Without fsync before the rename, a crash could leave an empty file under the output's name."""
    from stclip_cli.sinks.destinations import Destination, classify

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    destination = Destination(classify(tmp_path / "r.json", "--json"))
    destination.open().write("{}")
    destination.commit()
    assert events == ["fsync", "replace"] and (tmp_path / "r.json").read_text() == "{}"


def limit_file_size(max_bytes: int):
    """In the child: files may not grow past ``max_bytes`` (writes then fail with EFBIG, as a full disk fails)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--json", "--video"])
def test_disk_full_is_one_line_and_leaves_the_earlier_output(tmp_path, make_video, checkpoint, boxes, flag):
    video = make_video(tmp_path, n_frames=60, size=(160, 120))
    out = tmp_path / ("out.json" if flag == "--json" else "out.mp4")
    out.write_bytes(b"earlier output")
    before = snapshot(tmp_path)
    proc = stclip("detect", video, *args(checkpoint, boxes), flag, out, preexec_fn=limit_file_size(4000))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"error: cannot write {out}"), proc.stderr
    assert "Traceback" not in proc.stderr and out.read_bytes() == b"earlier output"
    assert snapshot(tmp_path) == before and not leftovers(tmp_path)


@pytest.mark.slow
def test_sigterm_exits_143_and_cleans_up(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=400, size=(160, 120))
    proc = subprocess.Popen([sys.executable, "-m", "stclip_cli", "detect", str(video), *args(checkpoint, boxes),
                             "--json", str(tmp_path / "out.json"), "--video", str(tmp_path / "out.mp4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not leftovers(tmp_path) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert leftovers(tmp_path), "the run should be writing by now"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and stderr.strip() == "terminated"
    assert not leftovers(tmp_path) and not (tmp_path / "out.json").exists() and not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--video", "out", "--video writes a video: name it .mp4 / .m4v / .mov / .mkv, or end it with / for a folder"),
        ("--video", "out.txt", "--video writes a video: name it .mp4"),
        ("--video", "out.gif", "(got {tmp}/out.gif)"),
        ("--video", "-", "--video cannot go to standard output"),
    ],
)
def test_output_formats_are_decided_before_decoding(tmp_path, make_video, checkpoint, boxes, flag, value, message):
    video = make_video(tmp_path, n_frames=3)
    line = one_line_error(detect(video, *args(checkpoint, boxes), flag, tmp_path / value if value != "-" else value))
    assert message.format(tmp=tmp_path) in line
    assert not leftovers(tmp_path)


def test_trailing_slash_means_a_new_folder(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=3)
    result = detect(video, *args(checkpoint, boxes), "--video", f"{tmp_path}/videos/", "--json", f"{tmp_path}/results/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "videos" / "clip.mp4").is_file() and (tmp_path / "results" / "clip.json").is_file()
    line = one_line_error(detect(video, *args(checkpoint, boxes), "--json", tmp_path / "o.json", "--csv", tmp_path / "o.json"))
    assert "given to two outputs" in line


def test_block_devices_are_refused(tmp_path, make_video, checkpoint, boxes):
    device = next((Path("/dev") / n for n in ("loop0", "sda", "vda", "nvme0n1") if (Path("/dev") / n).exists()), None)
    if device is None or not stat.S_ISBLK(os.stat(device).st_mode):
        pytest.skip("no block device to point at")
    video = make_video(tmp_path, n_frames=3)
    assert "refusing to write to a block device" in one_line_error(detect(video, *args(checkpoint, boxes), "--json", device))


def test_a_file_url_input_is_never_written_over(tmp_path, make_video, checkpoint, boxes):
    video = make_video(tmp_path, n_frames=3)
    before = video.read_bytes()
    for flag in ("--json", "--jsonl"):
        line = one_line_error(detect(video.as_uri(), *args(checkpoint, boxes), flag, video))
        assert "would write over the input" in line
    assert video.read_bytes() == before and not leftovers(tmp_path)


def test_no_output_goes_into_an_input_frame_folder(tmp_path, make_frames_folder, checkpoint, boxes):
    frames = make_frames_folder(tmp_path, n_frames=4)
    before = snapshot(frames)
    for flag, value in (("--plot", f"{frames}/"), ("--json", frames / "r.json"), ("--json", f"{frames}/sub/")):
        line = one_line_error(detect(frames, *args(checkpoint, boxes), flag, value))
        assert "inside the input folder" in line
    assert snapshot(frames) == before


def test_dot_input_writes_its_default_output_beside_the_folder(tmp_path, make_frames_folder, checkpoint, boxes,
                                                                monkeypatch):
    """``detect .`` in a frame folder planned ./.stclip.json: a hidden file inside the input."""
    frames = make_frames_folder(tmp_path, n_frames=4)
    monkeypatch.chdir(frames)
    result = detect(".", *args(checkpoint, boxes))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "frames.stclip.json").is_file() and not list(frames.glob("*.json"))


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-2"])
def test_a_frame_rate_that_is_no_rate_is_one_line(tmp_path, make_frames_folder, checkpoint, boxes, value):
    frames = make_frames_folder(tmp_path, n_frames=4)
    line = one_line_error(detect(frames, *args(checkpoint, boxes), "--fps", value, "--json", tmp_path / "r.json"))
    assert line.startswith("error: --fps must be a number above 0")
    assert not (tmp_path / "r.json").exists()


def test_same_stem_other_extension_and_a_true_duplicate_are_told_apart(tmp_path):
    two = tmp_path / "two"
    two.mkdir()
    plans = plan_outputs([two / "clip.mp4", two / "clip.mov"], {"json": f"{tmp_path}/out/"})
    assert [plan["json"].path.name for plan in plans] == ["clip-mp4.json", "clip-mov.json"]
    with pytest.raises(StclipError, match="given twice: .*y.mp4"):
        plan_outputs([tmp_path / "a" / "x.mp4", two / "y.mp4", two / "y.mp4"], {"json": f"{tmp_path}/out/"})
    with pytest.raises(StclipError, match="clip.mp4 and .*clip.mov would both write .*clip.stclip.json"):
        plan_outputs([two / "clip.mp4", two / "clip.mov"], {"json": None})
