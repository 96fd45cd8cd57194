"""Shared output of the benchmark scripts: results with the machine they ran on, printed and optionally saved."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


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
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
