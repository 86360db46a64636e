"""Every option of every command says what it does, and flags show no value type."""

from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner

from stclip_cli.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help(name):
    command = typer.main.get_command(app).commands[name]
    missing = [param.opts[0] for param in command.params if isinstance(param, click.Option) and not param.help]
    assert missing == [], f"{name}: options without help: {missing}"


@pytest.mark.parametrize("name", COMMANDS)
def test_flags_show_no_value_type(name):
    shown = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output
    lines = [line for line in shown.splitlines() if "<bool>" in line and "--help" not in line]
    assert lines == []
