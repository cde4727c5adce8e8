"""The README stays true: every documented command parses, every option is documented, the API example runs."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from inceptionism.cli import build_parser

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands():
    for line in README.splitlines():
        line = line.strip()
        m = re.match(r"^(?:\.venv/bin/)?inceptionism (dream|layers|models)\b(.*)$", line)
        if m and "…" not in line and "[" not in line:
            yield shlex.split(re.split(r"\s{2,}", line)[0])[1:]


def test_every_documented_command_parses():
    commands = list(_commands())
    assert len(commands) >= 4
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # raises SystemExit on an unknown or malformed option


def test_every_dream_option_is_documented_and_every_documented_option_exists():
    parser = build_parser()
    dream = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("dream"))
    options = {s for a in dream._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
    table = README.split("### `dream` options")[1].split("\n\n")[1]
    documented = set(re.findall(r"`(--[a-z-]+)", table))
    assert options == documented


def test_the_engine_example_runs():
    block = README.split("Lower down, objectives are composable values")[1].split("```python")[1].split("```")[0]
    block = block.replace("torch.rand(1, 3, 256, 384)", "torch.rand(1, 3, 48, 64)").replace("steps=20", "steps=1")
    scope: dict[str, object] = {}
    exec(block, scope)
    dream = scope["dream"]
    assert isinstance(dream, torch.Tensor) and dream.shape == (1, 3, 48, 64)


@pytest.mark.parametrize("path", re.findall(r"\]\((examples/[^)]+)\)", README))
def test_pictures_in_the_readme_exist(path):
    assert (Path(__file__).parent.parent / path).is_file()


def test_dream_example_pictures_carry_their_settings():
    from inceptionism.image_io import read_settings

    settings = read_settings(Path(__file__).parent.parent / "examples" / "coffee-dream.jpg")
    assert settings["model"] == "efficientnet-lite0" and settings["seed"] == 0
    assert np.isfinite(settings["step_size"])
