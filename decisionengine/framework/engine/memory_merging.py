"""Let the kernel merge the identical memory pages of channel processes (Linux KSM).

An idle channel process costs about 23 MiB of private memory, and nearly all of it is
pages of the fork server that the channel copied by touching an object on them: CPython
3.11 writes an object's reference count each time code uses it, even when it only raises
and lowers it again (``benchmarks/engine.py``; README "Scaling out").  Once the count is
back, the copy is identical, byte for byte, to the same page in every other channel.
Kernel samepage merging (KSM) finds such pages and maps them, copy-on-write, to one
physical page again, but only in processes that asked for it: each channel and shared
source process asks (``prctl(PR_SET_MEMORY_MERGE)``, Linux 6.4 and later) unless the
global configuration's ``channel_memory_merging`` is false.

Asking changes nothing by itself: the host's administrator starts the kernel's merging
thread (``/sys/kernel/mm/ksm/run``) and sets how fast it scans, which costs CPU time in
``ksmd``.  de-server reports at boot whether it will take effect (:func:`host_state`).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from decisionengine.framework.engine.supervision import libc_prctl

#: ``prctl`` options (``linux/prctl.h``)
PR_SET_MEMORY_MERGE = 67
PR_GET_MEMORY_MERGE = 68
#: the kernel's switch for its merging thread: 0 stopped, 1 running, 2 stopped and unmerging
KSM_RUN = pathlib.Path("/sys/kernel/mm/ksm/run")
#: merging is requested by default: it takes effect only where the host runs KSM
DEFAULT_CHANNEL_MEMORY_MERGING = True


def wanted(global_config: dict[str, Any] | None) -> bool:
    """Whether the configuration asks for merging (``channel_memory_merging``, default true)."""
    return bool((global_config or {}).get("channel_memory_merging", DEFAULT_CHANNEL_MEMORY_MERGING))


def request(global_config: dict[str, Any] | None) -> bool | None:
    """Ask the kernel to merge this process's identical pages, if the configuration wants it.

    Called first thing in each channel and shared source process.  None when the
    configuration turns it off; otherwise whether the kernel took the request (False on a
    kernel before 6.4 or without KSM).
    """
    if not wanted(global_config):
        return None
    prctl = libc_prctl()
    return prctl is not None and prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) == 0


def requested(pid: int | str = "self") -> bool | None:
    """Whether process ``pid`` asked for its pages to be merged; None where the kernel cannot tell."""
    try:
        text = pathlib.Path(f"/proc/{pid}/ksm_stat").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key.rstrip(":") == "ksm_merge_any":
            return value.strip() == "yes"
    return None


def merged_bytes(pid: int | str = "self") -> int | None:
    """How much of process ``pid``'s memory the kernel has merged with other pages; None if unknown."""
    try:
        pages = int(pathlib.Path(f"/proc/{pid}/ksm_merging_pages").read_text())
    except (OSError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def kernel_supports() -> bool:
    """Whether this kernel merges a whole process on request (``PR_GET_MEMORY_MERGE`` answers: 6.4+)."""
    prctl = libc_prctl()
    return prctl is not None and prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) >= 0


def host_state() -> str:
    """``running``, ``stopped`` or ``unavailable``: whether requested merging takes effect on this host."""
    try:
        run = KSM_RUN.read_text().strip()
    except OSError:
        return "unavailable"
    if not kernel_supports():
        return "unavailable"
    return "running" if run == "1" else "stopped"


def boot_report(global_config: dict[str, Any]) -> str | None:
    """What de-server logs at boot about channel memory merging; None when it is turned off."""
    if not wanted(global_config):
        return None
    return {
        "running": "channel memory merging: requested, and the host's KSM is running",
        "stopped": f"channel memory merging: requested, but the host's KSM is stopped ({KSM_RUN} is not 1): "
        "identical pages of channel processes stay apart until the administrator starts it",
        "unavailable": "channel memory merging: requested, but this kernel cannot merge a process's pages "
        "(no KSM, or older than Linux 6.4): it changes nothing",
    }[host_state()]
