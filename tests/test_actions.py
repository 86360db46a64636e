"""Action names from --actions / --actions-file."""

import pytest

from stclip_cli.core.actions import parse_actions
from stclip_cli.errors import StclipError


def test_names_are_trimmed_and_blank_entries_dropped(tmp_path):
    assert parse_actions(" brush  teeth , fishing,, ") == ["brush teeth", "fishing"]
    path = tmp_path / "a.txt"
    path.write_text("brush_hair\n\n  pour \n")
    assert parse_actions(actions_file=path) == ["brush_hair", "pour"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "no actions given"),
        ({"actions": ""}, "no action names given"),
        ({"actions": " , "}, "no action names given"),
        ({"actions": "sit,SIT"}, "duplicate action name 'SIT'"),
        ({"actions_file": "/nonexistent/a.txt"}, "actions file not found: /nonexistent/a.txt"),
    ],
)
def test_bad_action_lists(kwargs, message):
    with pytest.raises(StclipError, match=message):
        parse_actions(**kwargs)
