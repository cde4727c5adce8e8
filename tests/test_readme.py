"""The README and docs stay true: documented commands parse, every option is documented, the API example runs,
links resolve, and the README's set-up commands are the ones CI runs."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from inceptionism.cli import build_parser

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _commands():
    for line in README.splitlines():
        line = line.strip()
        m = re.match(r"^(?:\.venv/bin/)?inceptionism (dream|layers|models|presets|atlas|zoom|video|serve)\b(.*)$", line)
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
    reference = (ROOT / "docs" / "cli.md").read_text()
    table = reference.split("## `dream` options")[1].split("\n## ")[0]
    documented = set(re.findall(r"`(--[a-z0-9-]+)", table))
    assert options == documented
    assert "](docs/cli.md)" in README


def test_the_engine_example_runs():
    block = README.split("Lower down, objectives are composable values")[1].split("```python")[1].split("```")[0]
    block = block.replace("torch.rand(1, 3, 256, 384)", "torch.rand(1, 3, 48, 64)").replace("steps=20", "steps=1")
    scope: dict[str, object] = {}
    exec(block, scope)
    dream = scope["dream"]
    assert isinstance(dream, torch.Tensor) and dream.shape == (1, 3, 48, 64)


@pytest.mark.parametrize("path", re.findall(r"\]\((examples/[^)]+)\)", README))
def test_pictures_in_the_readme_exist(path):
    assert (ROOT / path).is_file()


def test_dream_example_pictures_carry_their_settings():
    from inceptionism.io import read_settings

    settings = read_settings(ROOT / "examples" / "coffee-dream.jpg")
    assert settings["model"] == "efficientnet-lite0" and settings["seed"] == 0
    assert np.isfinite(settings["step_size"])


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)}


DOCUMENTS = ["README.md", "examples/README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_relative_links_and_their_anchors_resolve(document):
    path = ROOT / document
    text = path.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"^[a-z]+:", link)]
    for link in local:
        target, _, anchor = link.partition("#")
        target_path = (path.parent / target).resolve() if target else path
        assert target_path.is_file(), f"{document}: broken link {link}"
        if anchor and target_path.suffix == ".md":
            assert anchor in _anchors(target_path.read_text()), f"{document}: no heading for {link}"


def test_the_readme_links_the_performance_notes():
    assert "](docs/performance.md)" in README
    assert (ROOT / "docs" / "performance.md").is_file()


def test_the_readme_test_command_is_what_ci_runs():
    readme_command = README.split("Install the test extras")[1].split("```bash")[1].split("```")[0].strip()
    ci_lines = [line.replace(" -q", "") for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_command in ci_lines
