"""Threads for work that may wait (a hot reload's build and compile, a refit's training), run at a
lower OS priority than scoring.

On a machine with few cores such work shares them with the batches being scored; compiling a new
architecture slowed the batches beside it 2-4x on 2 cores. Linux gives each thread its own nice value,
so raising this thread's lets the scheduler prefer the scoring threads whenever both want a core; the
work still runs, just on what scoring leaves. Elsewhere (no per-thread nice) it is a plain thread.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

BACKGROUND_NICE = 10  # added to the process's nice value; 19 is the lowest priority


def lower_this_thread(increment: int = BACKGROUND_NICE) -> None:
    """Raise the calling thread's nice value by ``increment`` (Linux: per thread); a no-op where not supported."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError:
        pass  # not allowed here: the work runs at normal priority


def background_executor(name: str) -> ThreadPoolExecutor:
    """One thread, at background priority (see the module's text), for work off the scoring path."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=lower_this_thread)
