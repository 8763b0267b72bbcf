"""The agent's memory offered to the kernel's same-page merging (KSM), when the host runs it.

Every agent is the same program doing the same things, so most of the ~2 MB each one writes
(copies of the zygote's pages, touched by reference counting) is identical across sandboxes;
merged, an idle bwrap sandbox holds ~0.8 MB private instead of ~2.6 MB. Only the agent's own
pages are offered: programs it starts get a fresh address space at exec and are never merged.

What ksmd costs is set on the host (``scripts/setup-host.sh``, ``docs/deploy.md``); what the
agent controls is how much it is given to walk: pages that are in memory, once the agent has
run a while.
"""

from . import fastos as os

MERGE_AFTER = 10.0


def merge_later():
    # Not at once: ksmd scans what is offered for as long as the process lives, so an agent of a
    # sandbox that lives a few seconds would pay for scanning and never share a page.
    """Offer the agent's memory to the kernel's same-page merging after a while (a short-lived sandbox's
    agent never pays for it)."""
    import time

    try:
        delay = float(os.environ.get("ROCK_AGENT_MERGE_AFTER") or MERGE_AFTER)
    except ValueError:
        delay = MERGE_AFTER
    if delay > 0:
        time.sleep(delay)
    merge_memory()


def merge_memory():
    """ROCK_AGENT_MERGE_MEMORY=1: offer this process's private pages that are in memory now.

    Not whole mappings: an agent's writable mappings span ~64 MB (thread stacks, allocator
    reservations) of which ~5.5 MB is in memory, and ksmd walks every page of a marked range on
    each of its passes for as long as the agent lives. Offered twice (after MERGE_AFTER, and at
    rest when the spare bash goes), which only adds what came into memory since."""
    import ctypes

    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/maps") as f:
            maps = f.read().splitlines()
        pagemap = open("/proc/self/pagemap", "rb", buffering=0)
    except OSError:
        return
    with pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) < 2 or fields[1] != "rw-p":
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            for lo, hi in _present_runs(pagemap, start, end, page):
                madvise(lo, hi - lo, 12)  # MADV_MERGEABLE; a range the kernel refuses stays as it is


# Maps the high byte of a page map entry to 1 when the page is in memory (bit 63), else 0.
_PRESENT = bytes(i >> 7 for i in range(256))


def _present_runs(pagemap, start, end, page):
    """(start, end) of each run of pages of [start, end) that are in memory. Found with bytes
    methods, not a loop over entries: a mapping may span hundreds of thousands of pages."""
    try:
        pagemap.seek(start // page * 8)
        entries = pagemap.read((end - start) // page * 8)
    except (OSError, ValueError):
        return [(start, end)]  # no page map to read: the whole mapping
    present = entries[7::8].translate(_PRESENT)  # entries are little-endian: byte 7 holds bit 63
    runs, i = [], present.find(1)
    while i >= 0:
        j = present.find(0, i)
        if j < 0:
            j = len(present)
        runs.append((start + i * page, start + j * page))
        i = present.find(1, j)
    return runs
