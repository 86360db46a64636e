"""Which videos a corpus run reads: folders, globs, @manifests, object-store URIs (a local folder posing as a store),
and the temporary local copy a worker decodes a remote video from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from stclip_cli.corpus import inputs as corpus_inputs
from stclip_cli.corpus.inputs import Missing, VideoRef, find_videos, local_copy, local_file
from stclip_cli.errors import StclipError


def touch(path: Path, data: bytes = b"video") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """clips/ with videos at two depths, a hidden temporary file, a non-video, a hidden folder and an output folder."""
    root = tmp_path / "clips"
    for name in ("b.mp4", "a.MOV", "cam1/c.mkv", "cam1/notes.txt", ".d.part.mp4", ".cache/e.mp4", "out/b.mp4"):
        touch(root / name)
    return root


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """``mem://`` URIs served by a local folder through a pyarrow filesystem, as an object store would be."""
    root = tmp_path / "store"
    root.mkdir()
    fs = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
    monkeypatch.setattr(corpus_inputs, "open_store", lambda uri: corpus_inputs._Store(fs, "mem://"))
    return root


def names(refs) -> list[str]:
    return [ref.name for ref in refs]


def test_folder_is_searched_recursively_for_visible_videos(tree):
    refs, missing = find_videos([str(tree)], exclude=[tree / "out"])
    assert names(refs) == [f"{tree}/a.MOV", f"{tree}/b.mp4", f"{tree}/cam1/c.mkv"] and missing == []
    assert refs[1].size == len(b"video") and refs[1].mtime_ns == os.stat(tree / "b.mp4").st_mtime_ns


def test_names_keep_the_spelling_of_the_folder(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    refs, _ = find_videos(["clips/", "clips/b.mp4", f"file://{tree}/a.MOV"], exclude=[Path("clips/out")])
    assert names(refs) == ["clips/a.MOV", "clips/b.mp4", "clips/cam1/c.mkv"]  # each video once, first spelling kept


def test_globs_select_videos(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    refs, _ = find_videos(["clips/**/*.m*"], exclude=[Path("clips/out")])
    assert names(refs) == ["clips/b.mp4", "clips/cam1/c.mkv"]  # the pattern's own match; .txt and hidden never


def test_manifest_entries_relative_to_it_missing_ones_recorded(tree, tmp_path):
    manifest = tmp_path / "lists" / "todo.txt"
    manifest.parent.mkdir()
    manifest.write_text(f"# a comment\n../clips/b.mp4\n\n{tree}/cam1/c.mkv\n../clips/gone.mp4\n../clips/cam1\n"
                        f"{tree}/cam1/notes.txt\n")
    refs, missing = find_videos([f"@{manifest}"])
    folder = str(manifest.parent)
    assert names(refs) == [f"{folder}/../clips/b.mp4", f"{tree}/cam1/c.mkv", f"{tree}/cam1/notes.txt"]  # named: read
    assert missing == [Missing(f"{folder}/../clips/gone.mp4", "video not found"), Missing(f"{folder}/../clips/cam1", "not a file")]


@pytest.mark.parametrize("spec, message", [
    ("{root}/nothing/", "no videos in {root}/nothing/"),
    ("{root}/nothing/*.mp4", "no videos matching {root}/nothing/*.mp4"),
    ("{root}/gone.mp4", "video not found: {root}/gone.mp4"),
    ("@{root}/gone.txt", "cannot read manifest {root}/gone.txt: not found"),
])
def test_specs_that_name_nothing_are_one_line_errors(tmp_path, spec, message):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(StclipError) as err:
        find_videos([spec.format(root=tmp_path)])
    assert str(err.value).startswith(message.format(root=tmp_path))


def test_object_store_folder_glob_and_manifest(store):
    for name in ("bucket/cams/x.mp4", "bucket/cams/deep/y.mp4", "bucket/cams/z.txt", "bucket/other/w.mp4"):
        touch(store / name)
    touch(store / "bucket" / "list.txt", b"cams/x.mp4\nmem://bucket/other/w.mp4\nmem://bucket/nope.mp4\n")
    refs, _ = find_videos(["mem://bucket/cams"])
    assert names(refs) == ["mem://bucket/cams/deep/y.mp4", "mem://bucket/cams/x.mp4"] and all(r.remote for r in refs)
    refs, _ = find_videos(["mem://bucket/*/w.mp4"])
    assert names(refs) == ["mem://bucket/other/w.mp4"]
    refs, missing = find_videos(["@mem://bucket/list.txt"])
    assert names(refs) == ["mem://bucket/cams/x.mp4", "mem://bucket/other/w.mp4"]
    assert missing == [Missing("mem://bucket/nope.mp4", "video not found")]


@pytest.mark.parametrize("uri", ["mock:///bucket/cams/", "mock:///bucket/cams/*.mp4", "mock:///bucket/a.mp4?x=1"])
def test_store_names_are_its_uri_prefix_plus_its_paths(uri):
    store = corpus_inputs.open_store(uri)
    assert store.prefix == "mock:///" and store.path("mock:///bucket/cams/a.mp4") == "bucket/cams/a.mp4"


def test_unknown_store_is_one_line_error():
    with pytest.raises(StclipError, match=r"^cannot open nosuchscheme://b/x.mp4: "):
        find_videos(["nosuchscheme://b/x.mp4"])


def test_remote_video_is_decoded_from_a_temporary_copy_deleted_afterwards(store, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    touch(store / "bucket" / "v.mp4", b"0123456789")
    with local_file(VideoRef("mem://bucket/v.mp4")) as path:
        assert path.name == "v.mp4" and path.read_bytes() == b"0123456789" and not path.is_relative_to(store)
    assert list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(RuntimeError), local_copy(pafs.SubTreeFileSystem(str(store), pafs.LocalFileSystem()), "bucket/v.mp4"):
        raise RuntimeError("decoding failed")
    assert list((tmp_path / "tmp").iterdir()) == []  # gone on errors too
    with pytest.raises(StclipError, match="^cannot fetch bucket/missing.mp4: "):
        with local_file(VideoRef("mem://bucket/missing.mp4")):
            pass


def test_local_video_is_read_in_place(tree):
    with local_file(VideoRef(str(tree / "b.mp4"))) as path:
        assert path == tree / "b.mp4"


def test_a_manifest_line_pyarrow_cannot_name_is_one_missing_entry(tree, tmp_path):
    """A NUL byte in one line raised pyarrow's ArrowInvalid out of the bulk lookup and ended the whole run."""
    manifest = tmp_path / "todo.txt"
    manifest.write_text(f"{tree}/b.mp4\n{tree}/bad\0name.mp4\n{tree}/cam1/c.mkv\n")
    refs, missing = find_videos([f"@{manifest}"])
    assert names(refs) == [f"{tree}/b.mp4", f"{tree}/cam1/c.mkv"]
    assert [m.name for m in missing] == [f"{tree}/bad\0name.mp4"] and missing[0].error.startswith("cannot read it: ")
