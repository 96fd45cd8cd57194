"""Shared output of the benchmark scripts: results with the machine they ran on, printed and saved atomically."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from rgbxseg.io import atomic_write_path


def machine_slug(name: str) -> str:
    """A file-name-safe form of a machine description (lower case, runs of other characters → '-')."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_markdown_and_json(stem: Path, markdown: str, payload: dict[str, Any]) -> Path:
    """Write ``stem.md`` and ``stem.json`` (each atomically); returns the Markdown path."""
    markdown_path = stem.with_name(stem.name + ".md")
    with atomic_write_path(markdown_path) as tmp:
        tmp.write_text(markdown)
    with atomic_write_path(stem.with_name(stem.name + ".json")) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    return markdown_path


def publish(results: dict[str, Any], json_path: Path | None, **versions: str) -> None:
    """Add the machine (CPUs, current load, Python and library versions) to ``results``; print; save if asked."""
    results["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        **versions,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if json_path is not None:
        with atomic_write_path(json_path) as tmp:
            tmp.write_text(text + "\n")
