"""What benchmarks read and write, kept free of heavy imports (every benchmark loads it before torch):
where the real corpora are (`shared/data` in or beside the checkout, /work/main -> /work/shared, or
beside any folder above it: a worktree /work/wt/NAME), and the JSON file of a result."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """$EMOSCALE_SHARED_DATA, else the first `shared/data` found walking up from the checkout,
    else `../shared/data` (which then names, in the benchmark's error, where it looked)."""
    if os.environ.get("EMOSCALE_SHARED_DATA"):
        return Path(os.environ["EMOSCALE_SHARED_DATA"])
    found = (folder / "shared" / "data" for folder in (REPO, *REPO.parents))
    return next((path for path in found if path.is_dir()), REPO.parent / "shared" / "data")


SHARED_DATA = shared_data()


def write_json(path: str | Path, result: dict) -> None:
    """A benchmark's result as JSON at `path` (its folder made if need be)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
