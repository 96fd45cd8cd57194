"""The README's commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    ci_commands = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    test_command = ci_commands[-1]
    assert test_command.endswith("pytest")
    assert test_command in (ROOT / "README.md").read_text().splitlines()
