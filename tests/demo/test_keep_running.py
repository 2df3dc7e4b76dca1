"""`visionmon demo --keep-running` stops on SIGTERM: a container stop must not hang."""
from __future__ import annotations

import os
import signal
import threading

from visionmon.demo import wait_for_stop_signal


def test_sigterm_ends_the_keep_running_wait_and_restores_the_old_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    wait_for_stop_signal(poll_seconds=0.05)
    timer.join()
    assert signal.getsignal(signal.SIGTERM) == before
