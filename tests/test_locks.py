"""The runner's locks across processes (triggers/locks.py): one holder at a time, even
while holders remove the file as they let go; none left behind; a killed holder's lock
is free."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from runner.triggers.locks import exclusive


def test_one_holder_at_a_time_and_no_file_left(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "job@abc.lock"
    holding: list[int] = []
    overlaps: list[list[int]] = []

    def hold(number: int) -> None:
        for _ in range(20):
            with exclusive(path):
                holding.append(number)
                if len(holding) > 1:
                    overlaps.append(list(holding))
                time.sleep(0.0005)
                holding.remove(number)

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert list(path.parent.iterdir()) == []


def test_a_killed_holders_lock_is_free(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "schedule.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from runner.triggers.locks import exclusive\n"
         "with exclusive(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)",
         str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    finally:
        holder.kill()
        holder.wait()
    assert path.exists()  # killed while it held the lock: the file stays, the lock does not
    done = threading.Event()

    def take() -> None:
        with exclusive(path):
            done.set()

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    taker.join(timeout=10)
    assert done.is_set()
    assert not path.exists()
