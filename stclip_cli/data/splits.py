"""The zero-shot label splits of the ST-CLIP paper (ZS-JHMDB, ZS-UCF, ZS-AVA) and the AVA v2.2 action list.

A label split names its train (seen) and test (unseen) classes; the two are disjoint. Class order: J-HMDB
and UCF101-24 train classes follow the dataset's class list; test classes follow the paper's table; AVA
classes follow the action id order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stclip_cli.errors import StclipError

JHMDB_CLASSES: tuple[str, ...] = (
    "brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour", "pullup",
    "push", "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "stand", "swing_baseball", "throw", "walk",
    "wave",
)

UCF24_CLASSES: tuple[str, ...] = (
    "Basketball", "BasketballDunk", "Biking", "CliffDiving", "CricketBowling", "Diving", "Fencing",
    "FloorGymnastics", "GolfSwing", "HorseRiding", "IceDancing", "LongJump", "PoleVault", "RopeClimbing",
    "SalsaSpin", "SkateBoarding", "Skiing", "Skijet", "SoccerJuggling", "Surfing", "TennisSwing",
    "TrampolineJumping", "VolleyballSpiking", "WalkingWithDog",
)

POSE = "PERSON_MOVEMENT"
OBJECT = "OBJECT_MANIPULATION"
PERSON = "PERSON_INTERACTION"

# ava_action_list_v2.2.pbtxt: id -> (name, label_type).
AVA_ACTIONS: dict[int, tuple[str, str]] = {
    1: ("bend/bow (at the waist)", POSE), 2: ("crawl", POSE), 3: ("crouch/kneel", POSE), 4: ("dance", POSE),
    5: ("fall down", POSE), 6: ("get up", POSE), 7: ("jump/leap", POSE), 8: ("lie/sleep", POSE),
    9: ("martial art", POSE), 10: ("run/jog", POSE), 11: ("sit", POSE), 12: ("stand", POSE), 13: ("swim", POSE),
    14: ("walk", POSE),
    15: ("answer phone", OBJECT), 16: ("brush teeth", OBJECT), 17: ("carry/hold (an object)", OBJECT),
    18: ("catch (an object)", OBJECT), 19: ("chop", OBJECT), 20: ("climb (e.g., a mountain)", OBJECT),
    21: ("clink glass", OBJECT), 22: ("close (e.g., a door, a box)", OBJECT), 23: ("cook", OBJECT),
    24: ("cut", OBJECT), 25: ("dig", OBJECT), 26: ("dress/put on clothing", OBJECT), 27: ("drink", OBJECT),
    28: ("drive (e.g., a car, a truck)", OBJECT), 29: ("eat", OBJECT), 30: ("enter", OBJECT),
    31: ("exit", OBJECT), 32: ("extract", OBJECT), 33: ("fishing", OBJECT), 34: ("hit (an object)", OBJECT),
    35: ("kick (an object)", OBJECT), 36: ("lift/pick up", OBJECT), 37: ("listen (e.g., to music)", OBJECT),
    38: ("open (e.g., a window, a car door)", OBJECT), 39: ("paint", OBJECT), 40: ("play board game", OBJECT),
    41: ("play musical instrument", OBJECT), 42: ("play with pets", OBJECT), 43: ("point to (an object)", OBJECT),
    44: ("press", OBJECT), 45: ("pull (an object)", OBJECT), 46: ("push (an object)", OBJECT),
    47: ("put down", OBJECT), 48: ("read", OBJECT), 49: ("ride (e.g., a bike, a car, a horse)", OBJECT),
    50: ("row boat", OBJECT), 51: ("sail boat", OBJECT), 52: ("shoot", OBJECT), 53: ("shovel", OBJECT),
    54: ("smoke", OBJECT), 55: ("stir", OBJECT), 56: ("take a photo", OBJECT),
    57: ("text on/look at a cellphone", OBJECT), 58: ("throw", OBJECT), 59: ("touch (an object)", OBJECT),
    60: ("turn (e.g., a screwdriver)", OBJECT), 61: ("watch (e.g., TV)", OBJECT),
    62: ("work on a computer", OBJECT), 63: ("write", OBJECT),
    64: ("fight/hit (a person)", PERSON), 65: ("give/serve (an object) to (a person)", PERSON),
    66: ("grab (a person)", PERSON), 67: ("hand clap", PERSON), 68: ("hand shake", PERSON),
    69: ("hand wave", PERSON), 70: ("hug (a person)", PERSON), 71: ("kick (a person)", PERSON),
    72: ("kiss (a person)", PERSON), 73: ("lift (a person)", PERSON), 74: ("listen to (a person)", PERSON),
    75: ("play with kids", PERSON), 76: ("push (another person)", PERSON),
    77: ("sing to (e.g., self, a person, a group)", PERSON), 78: ("take (an object) from (a person)", PERSON),
    79: ("talk to (e.g., self, a person, a group)", PERSON), 80: ("watch (a person)", PERSON),
}

# ava_action_list_v2.2_for_activitynet_2019.pbtxt: the 60 classes of the standard AVA evaluation.
AVA_EVAL_IDS: tuple[int, ...] = tuple(
    i for i in AVA_ACTIONS
    if i not in {2, 16, 18, 19, 21, 23, 25, 31, 32, 33, 35, 39, 40, 42, 44, 50, 53, 55, 71, 75}
)

AVA_CLASSES: tuple[str, ...] = tuple(name for name, _ in AVA_ACTIONS.values())
AVA_POSE_CLASSES: tuple[str, ...] = tuple(name for name, kind in AVA_ACTIONS.values() if kind == POSE)
AVA_ID_BY_NAME: dict[str, int] = {name: i for i, (name, _) in AVA_ACTIONS.items()}

_JHMDB_TEST = {
    1: ("clap", "sit", "wave", "throw", "pullup", "catch"),
    2: ("kick_ball", "run", "climb_stairs", "stand", "shoot_gun", "pick"),
    3: ("brush_hair", "push", "pour", "shoot_bow", "jump", "shoot_ball"),
    4: ("golf", "swing_baseball", "walk", "clap", "sit", "wave"),
}
_UCF24_TEST = {
    1: ("IceDancing", "FloorGymnastics", "SalsaSpin", "SkateBoarding", "SoccerJuggling", "VolleyballSpiking"),
    2: ("Basketball", "GolfSwing", "Skiing", "Biking", "CliffDiving", "Diving"),
    3: ("HorseRiding", "Fencing", "LongJump", "PoleVault", "Surfing", "BasketballDunk"),
    4: ("RopeClimbing", "Skijet", "TennisSwing", "TrampolineJumping", "CricketBowling", "WalkingWithDog"),
}
_AVA_TEST = {
    1: ("crawl", "dance", "jump/leap", "martial art", "swim", "brush teeth", "chop", "cook", "dig", "extract",
        "fishing", "kick (an object)", "play board game", "row boat", "sail boat", "shovel", "stir",
        "take a photo"),
    2: ("swim", "martial art", "play board game", "shovel", "take a photo", "row boat", "play with pets",
        "work on a computer", "hand clap", "lift (a person)", "kick (a person)", "play with kids"),
    3: ("text on/look at a cellphone", "turn (e.g., a screwdriver)", "press", "shovel", "stir",
        "hug (a person)"),
}
_DATASETS: dict[str, tuple[tuple[str, ...], Mapping[int, tuple[str, ...]], bool]] = {
    # name -> (all classes, test classes per split, sort test classes by id)
    "jhmdb": (JHMDB_CLASSES, _JHMDB_TEST, False),
    "ucf24": (UCF24_CLASSES, _UCF24_TEST, False),
    "ava": (AVA_CLASSES, _AVA_TEST, True),
}


ALL_CLASSES = 0  # `--split all`: no unseen classes, every class trains


def parse_split(value: str | int) -> int:
    """A split as typed on the command line: its number, or ``all`` for every class (returned as ``ALL_CLASSES``)."""
    text = str(value).strip().lower()
    if text == "all":
        return ALL_CLASSES
    if not text.isdigit() or int(text) == ALL_CLASSES:
        raise StclipError(f"--split must be a split number (see `stclip splits`) or all, not {value!r}")
    return int(text)


@dataclass(frozen=True)
class LabelSplit:
    """One zero-shot label split: train on ``train_classes``, report on the unseen ``test_classes``."""

    dataset: str
    split: int
    train_classes: tuple[str, ...]
    test_classes: tuple[str, ...]
    all_classes: tuple[str, ...]


def get_split(dataset: str, split: int) -> LabelSplit:
    """The paper's label split ``split`` (1-based) of ``dataset`` (jhmdb, ucf24 or ava); ``ALL_CLASSES`` (0) trains
    and reports on every class, which is what a model meant for deployment is trained on."""
    key = dataset.lower()
    if key not in _DATASETS:
        raise StclipError(f"unknown dataset {dataset!r}: expected one of {', '.join(_DATASETS)}")
    all_classes, tests, by_id = _DATASETS[key]
    if split == ALL_CLASSES:
        return LabelSplit(key, ALL_CLASSES, all_classes, all_classes, all_classes)
    if split not in tests:
        raise StclipError(f"unknown split {split} for {key}: expected one of {', '.join(map(str, tests))} or all")
    test = tests[split]
    if by_id:
        test = tuple(c for c in all_classes if c in set(test))
    train = tuple(c for c in all_classes if c not in set(test))
    return LabelSplit(key, split, train, test, all_classes)


def list_splits() -> list[LabelSplit]:
    """Every built-in label split, dataset by dataset."""
    return [get_split(name, k) for name, (_, tests, _) in _DATASETS.items() for k in tests]


def ava_training_videos(annotations: Iterable[tuple[str, int]], unseen_class_ids: Iterable[int]) -> set[str]:
    """ZS-AVA training videos: those with no annotation of any unseen class.

    ``annotations`` yields ``(video_id, action_id)`` pairs (extra tuple fields are ignored).
    """
    unseen = set(unseen_class_ids)
    videos: set[str] = set()
    tainted: set[str] = set()
    for row in annotations:
        video, action = row[0], int(row[1])
        videos.add(video)
        if action in unseen:
            tainted.add(video)
    return videos - tainted
