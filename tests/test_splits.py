"""Label splits: the paper's tables, the reference split files, the AVA action list and training-video rule."""

from pathlib import Path

import pytest

from stclip_cli.data.splits import (
    AVA_ACTIONS,
    AVA_CLASSES,
    AVA_EVAL_IDS,
    AVA_ID_BY_NAME,
    AVA_POSE_CLASSES,
    JHMDB_CLASSES,
    UCF24_CLASSES,
    ava_training_videos,
    get_split,
    list_splits,
)
from stclip_cli.errors import StclipError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "zs_jhmdb"


def test_sizes_and_disjointness():
    counts = {"jhmdb": (15, 6), "ucf24": (18, 6)}
    splits = list_splits()
    assert [(s.dataset, s.split) for s in splits][:4] == [("jhmdb", k) for k in range(1, 5)]
    assert len(splits) == 11
    for s in splits:
        assert not set(s.train_classes) & set(s.test_classes)
        assert set(s.train_classes) | set(s.test_classes) == set(s.all_classes)
        if s.dataset in counts:
            assert (len(s.train_classes), len(s.test_classes)) == counts[s.dataset]


def test_jhmdb_split_1_table_and_order():
    s = get_split("jhmdb", 1)
    assert s.test_classes == ("clap", "sit", "wave", "throw", "pullup", "catch")
    assert s.train_classes == tuple(c for c in JHMDB_CLASSES if c not in s.test_classes)
    assert get_split("JHMDB", 4).test_classes == ("golf", "swing_baseball", "walk", "clap", "sit", "wave")


def test_ucf_split_2():
    s = get_split("ucf24", 2)
    assert set(s.test_classes) == {"Basketball", "GolfSwing", "Skiing", "Biking", "CliffDiving", "Diving"}
    assert len(UCF24_CLASSES) == 24


def test_ava_action_list():
    assert len(AVA_ACTIONS) == 80 and len(AVA_CLASSES) == 80
    assert len(AVA_EVAL_IDS) == 60
    assert len(AVA_POSE_CLASSES) == 14
    assert AVA_ID_BY_NAME["hug (a person)"] == 70 and AVA_ID_BY_NAME["crawl"] == 2
    assert 2 not in AVA_EVAL_IDS and 80 in AVA_EVAL_IDS


def test_ava_splits():
    sizes = {1: 18, 2: 12, 3: 6}
    for k, n in sizes.items():
        s = get_split("ava", k)
        assert len(s.test_classes) == n and len(s.train_classes) == 80 - n
    assert set(get_split("ava", 3).test_classes) == {
        "text on/look at a cellphone", "turn (e.g., a screwdriver)", "press", "shovel", "stir", "hug (a person)"
    }


def test_ava_training_videos():
    rows = [("a", 11), ("a", 12), ("b", 11), ("b", 2), ("c", 80)]
    assert ava_training_videos(rows, [2]) == {"a", "c"}
    assert ava_training_videos(rows, []) == {"a", "b", "c"}


@pytest.mark.parametrize(
    "dataset, split, message",
    [
        ("hmdb", 1, "unknown dataset 'hmdb': expected one of jhmdb, ucf24, ava"),
        ("jhmdb", 5, "unknown split 5 for jhmdb: expected one of 1, 2, 3, 4 or all"),
        ("ava", 4, "unknown split 4 for ava: expected one of 1, 2, 3 or all"),
    ],
)
def test_bad_split_messages(dataset, split, message):
    with pytest.raises(StclipError) as err:
        get_split(dataset, split)
    assert str(err.value) == message


@pytest.mark.skipif(not SHARED.exists(), reason="../shared absent")
def test_matches_reference_files():
    assert tuple(SHARED.joinpath("all_label.txt").read_text().split()) == JHMDB_CLASSES
    for k in range(1, 5):
        s = get_split("jhmdb", k)
        folder = SHARED / f"label_split_{k}"
        assert tuple(folder.joinpath("test_label.txt").read_text().split()) == s.test_classes
        assert set(folder.joinpath("train_label.txt").read_text().split()) == set(s.train_classes)


def test_split_all_trains_every_class_and_parses_from_the_command_line():
    from stclip_cli.data.splits import ALL_CLASSES, parse_split

    every = get_split("jhmdb", parse_split("all"))
    assert every.split == ALL_CLASSES and every.train_classes == every.test_classes == every.all_classes
    assert len(every.train_classes) == 21
    assert parse_split("3") == 3
    for bad in ("0", "x", "-1"):
        with pytest.raises(StclipError, match="split number .* or all"):
            parse_split(bad)
