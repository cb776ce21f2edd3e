"""The host's kernel samepage merging (KSM) for the memory benchmarks: its state, its CPU, and a
run of it started for a measurement and put back as it was after.

KSM is the host administrator's setting (``/sys/kernel/mm/ksm``); de-server only asks for its
channel processes to be merged (``channel_memory_merging``).  A benchmark run as root on a host
where KSM is stopped starts it for the measurement, at the scan rate it is given, and restores
every setting it changed; elsewhere it measures the host as it is.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
from collections.abc import Iterator

KSM = pathlib.Path("/sys/kernel/mm/ksm")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read(name: str) -> int:
    return int((KSM / name).read_text())


def available() -> bool:
    return (KSM / "run").exists()


def ksmd_cpu_seconds() -> float:
    """CPU time of the kernel's merging thread so far (0 where there is none)."""
    try:
        pid = int(subprocess.check_output(["pgrep", "-x", "ksmd"]).split()[0])
    except (subprocess.CalledProcessError, FileNotFoundError, IndexError):
        return 0.0
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextlib.contextmanager
def running(pages_to_scan: int) -> Iterator[str]:
    """KSM running for the block; yields how: "host" (it ran already, untouched) or "started"
    (this run started it with ``pages_to_scan``; stopped and unmerged after).  Raises
    PermissionError where it is stopped and cannot be started (not root)."""
    if not available():
        raise PermissionError(f"{KSM} does not exist: this kernel has no KSM")
    if read("run") == 1:
        yield "host"
        return
    saved_rate = (KSM / "pages_to_scan").read_text()
    (KSM / "pages_to_scan").write_text(str(pages_to_scan))
    (KSM / "run").write_text("1")
    try:
        yield "started"
    finally:
        (KSM / "run").write_text("2")  # stop and unmerge: the host is as it was
        (KSM / "pages_to_scan").write_text(saved_rate)
        (KSM / "run").write_text("0")
