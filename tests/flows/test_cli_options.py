"""Which commands take `--profile` and `--data-root`: the README lists them, keep both true."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from flows.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(group: Any, prefix: str = "") -> dict[str, set[str]]:
    """Every command (`masks status` for a group's) with its options."""
    found: dict[str, set[str]] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group
            found |= _commands(command, f"{prefix}{name} ")
        else:
            found[prefix + name] = {opt for param in command.params for opt in param.opts}
    return found


def test_the_readme_says_which_commands_take_profile_and_data_root() -> None:
    commands = _commands(typer.main.get_command(app))
    no_profile = {name for name, opts in commands.items() if "--profile" not in opts}
    no_data_root = {name for name, opts in commands.items() if "--data-root" not in opts}
    text = " ".join(README.read_text().split())
    listed = re.search(r"takes `--profile` \(default `demo`\): all but (.+?), which only read",
                       text)
    assert listed is not None
    assert set(re.findall(r"`([a-z -]+)`", listed.group(1))) == no_profile
    assert no_data_root == {"synth"} and "except `dsan synth`, which writes to `--out`" in text
