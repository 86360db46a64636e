"""Hostile checkpoints, model cards and reference files: each is one ``error:`` line naming the file (and the field
or tensor), exit 1, no traceback, and no input file changes; a fuzz test per reader requires one StclipError or
success for random and mutated files, never another exception."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import one_line_error
from stclip_cli.weights.cards import card_for_checkpoint, card_from_dict, load_card, read_metadata
from stclip_cli.cli import app
from stclip_cli.errors import StclipError
from stclip_cli.weights.reference import read_reference

runner = CliRunner()
ACTIONS = "brush teeth,fishing,sit"


def metadata_of(path: Path) -> dict:
    with safe_open(str(path), framework="np") as f:
        return json.loads(f.metadata()["stclip"])


def with_metadata(source: Path, target: Path, text: str, tensors: dict | None = None) -> Path:
    """A copy of ``source``'s tensors (or ``tensors``) with ``text`` as its stclip metadata."""
    save_file(tensors if tensors is not None else load_file(str(source)), str(target), metadata={"stclip": text})
    return target


def boxes_file(tmp_path: Path, n_frames: int) -> Path:
    rows = [{"image_id": f, "bbox": [10, 8, 30, 42], "score": 0.9} for f in range(n_frames)]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(rows))
    return path


def detect_with(tmp_path: Path, video: Path, checkpoint: Path, *extra: str):
    args = ["detect", str(video), "--actions", ACTIONS, "--model", "tiny-test", "--checkpoint", str(checkpoint),
            "--boxes", str(boxes_file(tmp_path, 4)), "--quiet", "--json", str(tmp_path / "out.json"), *extra]
    return runner.invoke(app, args)


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths if p.is_file()}


def mutate(meta: dict, path: str, value) -> dict:
    """``meta`` with the dotted ``path`` set to ``value`` (the key removed when value is ``...``)."""
    meta = json.loads(json.dumps(meta))
    keys = path.split(".")
    holder = meta
    for key in keys[:-1]:
        holder = holder[key]
    if value is ...:
        holder.pop(keys[-1])
    else:
        holder[keys[-1]] = value
    return meta


METADATA_CASES = [
    ("not-json", "{oops", "its stclip metadata is not JSON"),
    ("list", "[1, 2]", "its stclip metadata must be a JSON object, not list"),
    ("nan", None, "its stclip metadata is not JSON (NaN is not a JSON number"),
    ("window-abc", ("card.window", "abc"), "window must be a whole number from 1 to 1024 (got \"abc\")"),
    ("window-huge", ("card.window", 10**9), "window must be a whole number from 1 to 1024"),
    ("lora-rank-0", ("card.lora_rank", 0), "lora_rank must be a whole number from 1 to 4096 (got 0)"),
    ("temperature-0", ("card.temperature", 0), "temperature must be clip or a finite number above 0 (got 0)"),
    ("temperature-text", ("card.temperature", "hot"), "temperature must be clip or a finite number above 0"),
    ("multi-label-text", ("card.multi_label", "yes"), "multi_label must be true or false"),
    ("interest-k-negative", ("card.interest_k", -3), "interest_k must be null or a whole number of at least 0"),
    ("backbone-number", ("card.backbone", 7), "backbone must be a non-empty string"),
    ("card-missing", ("card", ...), "must be a mapping with at least name, kind and backbone"),
    ("card-list", ("card", [1]), "must be a mapping with at least name, kind and backbone"),
    ("unknown-field", ("card.colour", "red"), "has unknown fields: colour"),
    ("step-text", ("step", "3"), "metadata step must be null or a whole number of at least 0 (got \"3\")"),
    ("step-float", ("step", 2.5), "metadata step must be null or a whole number of at least 0 (got 2.5)"),
    ("split-negative", ("split", -1), "metadata split must be null or a split number of at least 0"),
    ("dataset-number", ("dataset", 5), "metadata dataset must be null or a dataset name"),
    ("config-list", ("config", []), "metadata config must be an object"),
]


@pytest.mark.parametrize("case, change, message", METADATA_CASES, ids=[c[0] for c in METADATA_CASES])
def test_bad_checkpoint_metadata_is_one_line(tmp_path, make_video, checkpoint, case, change, message):
    meta = dict(metadata_of(checkpoint), dataset="jhmdb", split=1)
    if isinstance(change, tuple):
        text = json.dumps(mutate(meta, *change))
    elif change is None:
        text = json.dumps(meta).replace('"temperature": 0.07', '"temperature": NaN')
    else:
        text = change
    bad = with_metadata(checkpoint, tmp_path / "bad.safetensors", text)
    video = make_video(tmp_path, n_frames=4)
    before = snapshot(bad, video, checkpoint)
    line = one_line_error(detect_with(tmp_path, video, bad))
    assert str(bad) in line and message in line, line
    line = one_line_error(runner.invoke(app, ["eval", "--checkpoint", str(bad), "--gt-boxes", "--quiet"]))
    assert str(bad) in line and message in line, line
    assert snapshot(bad, video, checkpoint) == before and not (tmp_path / "out.json").exists()


def test_checkpoint_path_that_is_not_a_readable_file(tmp_path, make_video):
    video = make_video(tmp_path, n_frames=4)
    line = one_line_error(detect_with(tmp_path, video, tmp_path / "none.safetensors"))
    assert line.startswith(f"error: checkpoint not found: {tmp_path / 'none.safetensors'}"), line
    with pytest.raises(StclipError, match="^checkpoint not found: "):
        read_metadata(tmp_path / "none.safetensors")
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    with pytest.raises(StclipError, match=f"^checkpoint {folder} is a folder; give the .safetensors file$"):
        read_metadata(folder)
    if os.geteuid() != 0:  # root reads any file
        locked = tmp_path / "locked.safetensors"
        locked.write_bytes(b"x" * 16)
        locked.chmod(0)
        with pytest.raises(StclipError, match=f"^cannot read checkpoint {locked}: Permission denied$"):
            read_metadata(locked)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"hello")
    with pytest.raises(StclipError, match=f"^{garbage} is not a safetensors checkpoint"):
        read_metadata(garbage)


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, make_video, checkpoint):
    tensors = load_file(str(checkpoint))
    name = next(k for k in tensors if k.startswith("model.") and "lora_B" not in k and tensors[k].is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    bad = with_metadata(checkpoint, tmp_path / "nan.safetensors", json.dumps(metadata_of(checkpoint)), tensors)
    video = make_video(tmp_path, n_frames=4)
    before = snapshot(bad, video)
    line = one_line_error(detect_with(tmp_path, video, bad))
    assert line == f"error: checkpoint {bad}: tensor {name} holds NaN or infinite values; it cannot score", line
    assert snapshot(bad, video) == before and not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("field, value, message", [
    ("window", "abc", "window must be a whole number from 1 to 1024"),
    ("lora_rank", 0, "lora_rank must be a whole number from 1 to 4096"),
    ("temperature", 0, "temperature must be clip or a finite number above 0"),
    ("temperature", ".nan", "temperature must be clip or a finite number above 0"),
    ("interest_k", 1.5, "interest_k must be null or a whole number of at least 0"),
    ("pretrained", ["openai"], "pretrained must be a string or null"),
])
def test_bad_model_card_yaml_is_one_line(tmp_path, make_video, field, value, message):
    text = (Path(__file__).resolve().parents[1] / "models" / "tiny-test.yaml").read_text()
    shown = value if isinstance(value, str) and value.startswith(".") else json.dumps(value)
    lines = [f"{field}: {shown}" if line.startswith(f"{field}:") else line for line in text.splitlines()]
    card = tmp_path / "card.yaml"
    card.write_text("\n".join(lines) + "\n")
    video = make_video(tmp_path, n_frames=4)
    before = snapshot(card, video)
    result = runner.invoke(app, ["detect", str(video), "--actions", ACTIONS, "--model", str(card),
                                 "--boxes", str(boxes_file(tmp_path, 4)), "--quiet", "--json", str(tmp_path / "o.json")])
    line = one_line_error(result)
    assert f"model card {card}: {message}" in line, line
    assert snapshot(card, video) == before


META_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                        st.text(max_size=12))
META_VALUES = st.recursive(META_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=8)
CARD_KEYS = ["name", "kind", "backbone", "pretrained", "window", "lora_rank", "lora_alpha", "interest_k", "rho_init",
             "temperature", "multi_label", "checkpoint"]
TOP_KEYS = ["card", "step", "dataset", "split", "classes", "config", "schedule", "imported_from"]


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_checkpoint_metadata(tmp_path_factory, checkpoint, data):
    """Random JSON-ish values, mutated valid metadata and raw byte strings as a checkpoint's stclip metadata:
    read_metadata and card_for_checkpoint succeed or raise StclipError. 300 examples, about 3 s."""
    valid = dict(metadata_of(checkpoint), dataset="jhmdb", split=1, classes=["a"], config={"options": {}})
    kind = data.draw(st.sampled_from(["value", "card-field", "top-field", "text", "drop"]))
    if kind == "value":
        text = json.dumps(data.draw(META_VALUES))
    elif kind == "card-field":
        text = json.dumps(mutate(valid, f"card.{data.draw(st.sampled_from(CARD_KEYS))}", data.draw(META_VALUES)))
    elif kind == "top-field":
        text = json.dumps(mutate(valid, data.draw(st.sampled_from(TOP_KEYS)), data.draw(META_VALUES)))
    elif kind == "drop":
        text = json.dumps(mutate(valid, data.draw(st.sampled_from(["card." + k for k in CARD_KEYS])), ...))
    else:
        raw = json.dumps(valid)
        cut = data.draw(st.integers(0, len(raw)))
        text = raw[:cut] + data.draw(st.text(max_size=6)) + raw[cut + 1:]
    path = tmp_path_factory.mktemp("fuzz") / "c.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"stclip": text})
    for reader in (read_metadata, card_for_checkpoint, lambda p: card_for_checkpoint(p, load_card("tiny-test"))):
        try:
            reader(path)
        except StclipError as err:
            assert "\n" not in str(err) and str(path) in str(err)


def test_card_from_dict_takes_every_shipped_card():
    from stclip_cli.weights.cards import list_cards

    for name in list_cards():
        card = load_card(name)
        assert card_from_dict(card.to_dict(), name) == card


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


VALID_REFERENCE = saved({"model": {"module.ln_person.weight": torch.ones(4), "module.ln_person.bias": torch.zeros(4)},
                         "iteration": 5})
REFERENCE_CASES = [
    ("text", b"model weights, honest\n", "not a torch checkpoint"),
    ("empty", b"", "not a torch checkpoint (EOFError"),
    ("truncated-zip", VALID_REFERENCE[: len(VALID_REFERENCE) // 2], "not a torch checkpoint"),
    ("stack-underflow", b"\x80\x02a.", "not a torch checkpoint"),
    ("memo-miss", b"\x80\x02h\x05.", "not a torch checkpoint"),
    ("list", saved([1, 2]), "holds no state dict of tensors"),
    ("numbers", saved({"model": {"a": 1, "b": "x"}}), "holds no state dict of tensors"),
    ("unknown-names", saved({"bogus\nname": torch.zeros(2)}), "unknown names such as bogus\\nname"),
    ("missing-keys", VALID_REFERENCE, "the reference weights lack"),
]


@pytest.mark.parametrize("case, content, message", REFERENCE_CASES, ids=[c[0] for c in REFERENCE_CASES])
def test_bad_reference_file_is_one_line(tmp_path, case, content, message):
    reference = tmp_path / "ref.pth"
    reference.write_bytes(content)
    out = tmp_path / "o.safetensors"
    line = one_line_error(runner.invoke(app, ["import-reference", str(reference), "--model", "tiny-test", "--out", str(out)]))
    assert line.startswith(f"error: {reference}") and message in line, line
    assert reference.read_bytes() == content and not out.exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--split", "-1", "--split must be a split number of at least 0"), ("--dataset", "kinetics", "--dataset must be jhmdb"),
])
def test_bad_import_reference_flag(tmp_path, flag, value, message):
    reference = tmp_path / "ref.pth"
    reference.write_bytes(VALID_REFERENCE)
    line = one_line_error(runner.invoke(app, ["import-reference", str(reference), "--out", str(tmp_path / "o.safetensors"), flag, value]))
    assert message in line, line


@pytest.fixture(scope="module")
def tiny_model():
    from stclip_cli.weights.cards import build_model

    return build_model(load_card("tiny-test"))


@pytest.mark.parametrize("change, message", [
    (lambda t: t.to(torch.int64), "is torch.int64"),
    (lambda t: torch.full_like(t, float("inf")), "holds NaN or infinite values"),
    (lambda t: t.flatten()[:1], "this model needs"),
])
def test_bad_reference_tensor_is_named(tiny_model, monkeypatch, change, message):
    from stclip_cli.weights import reference as ref

    monkeypatch.setattr(ref, "to_stclip_names", dict)  # the model's own names: only the tensor checks speak
    weights = {n: p.detach().clone() for n, p in tiny_model.named_parameters() if p.requires_grad}
    name = sorted(weights)[0]
    weights[name] = change(weights[name])
    with pytest.raises(StclipError, match=f"reference tensor for {re.escape(name)} .*{message}"):
        ref.load_reference_weights(tiny_model, weights)


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_reference_import(tmp_path_factory, tiny_model, data):
    """Random bytes, and a real torch.save file truncated, with bytes flipped or inserted: read_reference and
    load_reference_weights succeed or raise StclipError. 500 examples, about 3 s."""
    from stclip_cli.weights.reference import load_reference_weights

    kind = data.draw(st.sampled_from(["random", "truncate", "flip", "insert", "pickle"]))
    raw = VALID_REFERENCE
    if kind == "random":
        content = data.draw(st.binary(max_size=256))
    elif kind == "truncate":
        content = raw[: data.draw(st.integers(0, len(raw)))]
    elif kind == "flip":
        content = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(raw) - 1))
            content[at] ^= data.draw(st.integers(1, 255))
        content = bytes(content)
    elif kind == "insert":
        at = data.draw(st.integers(0, len(raw)))
        content = raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    else:  # a legacy pickle stream: protocol header, random opcodes, STOP
        content = b"\x80\x02" + data.draw(st.binary(max_size=24)) + b"."
    path = tmp_path_factory.mktemp("fuzz") / "ref.pth"
    path.write_bytes(content)
    try:
        load_reference_weights(tiny_model, read_reference(path))
    except StclipError as err:
        assert "\n" not in str(err)
