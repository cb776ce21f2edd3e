"""Where the demo reads its snapshots and writes its output."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"
STATE_DIR_ENV = "DE_STATE_DIR"


def snapshot(directory: str | os.PathLike[str], period: float, clock: Callable[[], float] = time.time) -> pathlib.Path:
    """The snapshot file for now: the files of ``directory`` in name order, one per ``period`` seconds.

    Based on the clock rather than a call count, so that a restarted channel continues
    where the data "is" now instead of starting over.
    """
    files = sorted(p for p in pathlib.Path(directory).iterdir() if p.suffix == ".csv")
    if not files:
        raise FileNotFoundError(f"no .csv snapshot in {directory}")
    index = int(clock() // max(period, 1e-9)) % len(files)
    return files[index]


def read_snapshot(directory: str | os.PathLike[str], period: float, columns: list[str]) -> tuple[pathlib.Path, Any]:
    """(file, frame with ``columns``) of the current snapshot; ValueError naming the file and what it lacks."""
    import pandas as pd  # noqa: PLC0415 - keep this helper module light for the CLI

    path = snapshot(directory, period)
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    return path, frame[columns]


def output_dir(configured: str) -> pathlib.Path:
    """``configured``, relative to ``$DE_STATE_DIR`` (what ``de-server --state-dir`` sets) when relative."""
    path = pathlib.Path(configured).expanduser()
    if not path.is_absolute():
        path = pathlib.Path(os.environ.get(STATE_DIR_ENV, ".")) / path
    path.mkdir(parents=True, exist_ok=True)
    return path
