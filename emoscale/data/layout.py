"""Finding a corpus' files under data.path, and the one-line error when they are not there."""

from __future__ import annotations

from pathlib import Path

from emoscale.errors import DataError


def corpus_folder(data_config) -> Path:
    if data_config.path is None:
        raise DataError(f"data.path is required for dataset {data_config.dataset!r}")
    folder = Path(data_config.path)
    if not folder.is_dir():
        raise DataError(f"data.path {folder} is not a folder")
    return folder


def listing(folder: Path, limit: int = 8) -> str:
    """What a folder holds, for 'found ...' in an error: the first few names, sorted."""
    names = sorted(path.name + ("/" if path.is_dir() else "") for path in folder.iterdir())
    if not names:
        return "nothing"
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def require(folder: Path, names: list[str], corpus: str) -> None:
    """Every name must exist under `folder`; otherwise say what was expected and what is there."""
    for name in names:  # a folder where the release has a file (a copy that went wrong)
        if (folder / name).is_dir():
            raise DataError(f"{folder / name}: a folder, expected {corpus}'s file {name}")
    if not all((folder / name).is_file() for name in names):
        expected = ", ".join(names)
        raise DataError(f"{folder}: expected {expected} ({corpus}); found {listing(folder)}")
