import os
import sys
import threading

import pytest

from stream_app.background import background_executor


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_background_work_runs_at_a_lower_priority_than_the_caller() -> None:
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = background_executor("test-background")
    try:
        theirs = pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    finally:
        pool.shutdown()
    assert theirs > caller or theirs == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller  # the caller's own is untouched
