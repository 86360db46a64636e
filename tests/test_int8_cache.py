"""The --int8 model's cache entry (weights/int8_cache.py): used only when it is exactly this model's, rebuilt when
damaged, foreign or stale, and what it gives scores exactly as a freshly quantized model."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import trained_tiny
from stclip_cli.weights import int8_cache
from stclip_cli.weights.cards import load_card, save_checkpoint


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A tiny CLIP weights file, a checkpoint with non-zero heads and LoRA, and a cache folder of this test's own."""
    from safetensors.torch import save_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    card, trained = trained_tiny(5)
    clip_file = tmp_path / "clip.safetensors"
    from stclip_cli.model.clip_backbone import create_clip

    save_file({k: v.contiguous() for k, v in create_clip(card.backbone).state_dict().items()}, str(clip_file))
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, trained, card, {"step": 0})
    return card.replace(checkpoint=str(checkpoint)), clip_file


def scores(model) -> torch.Tensor:
    torch.manual_seed(1)
    size = model.clip.visual.image_size[0]
    frames = torch.randn(9, 3, size, size)
    with torch.inference_mode():
        return model(model.frame_patches(frames), torch.arange(9)[None], frames[4:5], torch.randn(2, 3, size, size),
                     torch.zeros(2, dtype=torch.long), model.encode_text(["clap", "wave", "sit"]))


def entries() -> list:
    folder = int8_cache.cache_folder()
    return sorted(folder.iterdir()) if folder.is_dir() else []


def counting_quantize(monkeypatch) -> list:
    from stclip_cli.model import int8

    calls = []
    real = int8.quantize_int8
    monkeypatch.setattr(int8, "quantize_int8", lambda model: (calls.append(1), real(model))[1])
    return calls


def test_second_build_reads_the_entry_and_scores_the_same(files, monkeypatch):
    card, clip_file = files
    calls = counting_quantize(monkeypatch)
    first = scores(int8_cache.int8_model(card, clip_file))
    assert len(calls) == 1 and [p.suffix for p in entries()] == [".safetensors"]  # no temporary file left
    second = scores(int8_cache.int8_model(card, clip_file))
    assert len(calls) == 1, "the entry was used, nothing quantized again"
    assert torch.equal(first, second)


@pytest.mark.parametrize("spoil", ["truncated", "garbage", "foreign key", "nan weight", "missing tensor"])
def test_a_bad_entry_is_rebuilt_never_used(files, monkeypatch, spoil):
    from safetensors.torch import load_file, save_file

    card, clip_file = files
    want = scores(int8_cache.int8_model(card, clip_file))
    (entry,) = entries()
    tensors, meta = load_file(str(entry)), {int8_cache.META_KEY: json.dumps({"key": entry.stem, "format": 1})}
    if spoil == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif spoil == "garbage":
        entry.write_bytes(os.urandom(4096))
    elif spoil == "foreign key":
        save_file(tensors, str(entry), metadata={int8_cache.META_KEY: json.dumps({"key": "0" * 40, "format": 1})})
    elif spoil == "nan weight":
        name = next(n for n, t in tensors.items() if t.is_floating_point() and not n.endswith(".scale"))
        tensors[name] = torch.full_like(tensors[name], float("nan"))
        save_file(tensors, str(entry), metadata=meta)
    else:
        tensors.pop(next(iter(tensors)))
        save_file(tensors, str(entry), metadata=meta)
    calls = counting_quantize(monkeypatch)
    assert torch.equal(scores(int8_cache.int8_model(card, clip_file)), want)
    assert len(calls) == 1, "rebuilt"
    assert len(entries()) == 1 and int8_cache.read_entry(entry, entry.stem, lambda t: True), "and written again, valid"


def test_a_replaced_checkpoint_gets_a_new_entry(files, monkeypatch, tmp_path):
    card, clip_file = files
    old = scores(int8_cache.int8_model(card, clip_file))
    _, other = trained_tiny(9)
    save_checkpoint(card.checkpoint, other, load_card("tiny-test"), {"step": 1})  # same path, new file
    calls = counting_quantize(monkeypatch)
    new = scores(int8_cache.int8_model(card, clip_file))
    assert len(calls) == 1 and len(entries()) == 2
    assert not torch.equal(old, new)


def test_a_cache_folder_that_cannot_be_written_leaves_the_run_uncached(files, monkeypatch, tmp_path):
    card, clip_file = files
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    scores(int8_cache.int8_model(card, clip_file))
    assert blocker.read_text() == "mine"


def test_detect_int8_twice_writes_the_same_json(files, tmp_path, make_video):
    from conftest import boxes_file, detect

    card, clip_file = files
    video = make_video(tmp_path, n_frames=12)
    boxes = boxes_file(tmp_path, 12)
    outs = []
    for run in range(2):
        out = tmp_path / f"run{run}.json"
        result = detect(video, "--actions", "clap,wave", "--model", "tiny-test", "--checkpoint", card.checkpoint,
                        "--clip-weights", clip_file, "--boxes", boxes, "--int8", "--quiet", "--json", out)
        assert result.exit_code == 0, result.output
        outs.append(json.loads(out.read_text()))
    assert outs[0]["frames"] == outs[1]["frames"] and outs[0]["model"]["precision"] == "int8"
    assert len(entries()) == 1


def test_a_link_at_the_entry_path_is_replaced_not_written_through(files, tmp_path):
    """Someone else's file linked where the entry goes: it is read as a bad entry, the link is replaced, the file
    it points to keeps its bytes."""
    card, clip_file = files
    key = int8_cache.entry_key(card, clip_file)
    theirs = tmp_path / "theirs.bin"
    theirs.write_bytes(b"not an entry")
    folder = int8_cache.cache_folder()
    folder.mkdir(parents=True)
    (folder / f"{key}.safetensors").symlink_to(theirs)
    scores(int8_cache.int8_model(card, clip_file))
    assert theirs.read_bytes() == b"not an entry"
    assert not (folder / f"{key}.safetensors").is_symlink()


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(files):
    """A temporary entry left by a dead process of this machine goes; a live process's stays."""
    import subprocess
    import sys

    from stclip_cli.sinks.destinations import host_name

    card, clip_file = files
    folder = int8_cache.cache_folder()
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = folder / f".x.safetensors.{host_name()}.{int(dead.stdout)}.tmp"
    live = folder / f".y.safetensors.{host_name()}.{os.getppid()}.tmp"
    left.write_bytes(b"half")
    live.write_bytes(b"being written")
    scores(int8_cache.int8_model(card, clip_file))
    assert not left.exists() and live.read_bytes() == b"being written"


def test_old_entries_are_removed_beyond_keep_and_nothing_else(files, monkeypatch):
    """A new entry removes the least recently used ones past KEEP; files in the folder that are not entries stay."""
    card, clip_file = files
    monkeypatch.setattr(int8_cache, "KEEP", 1)
    folder = int8_cache.cache_folder()
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "mine.safetensors").write_bytes(b"mine")
    scores(int8_cache.int8_model(card, clip_file))
    first = [p.name for p in entries() if p.name.endswith(".safetensors") and p.name != "mine.safetensors"]
    _, other = trained_tiny(9)
    save_checkpoint(card.checkpoint, other, load_card("tiny-test"), {"step": 1})  # a new identity: a new entry
    scores(int8_cache.int8_model(card, clip_file))
    now = [p.name for p in entries() if p.name.endswith(".safetensors") and p.name != "mine.safetensors"]
    assert len(first) == 1 and len(now) == 1 and now != first
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "mine.safetensors").read_bytes() == b"mine"
