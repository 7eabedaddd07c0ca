"""A trial for the worker tests: reports what it finds of earlier trials, and can leave
files and a process behind, sleep past its timeout or take too much memory."""

import os
import socket
import subprocess
import sys
import time

LINGER = """
import time
while True:
    try:
        open('/tmp/still-here', 'w').close()
    except OSError:
        pass
    time.sleep(0.05)
"""


def _others():
    """Processes of this container that are neither the worker's fork server nor this trial."""
    mine = {1, os.getpid(), os.getppid()}
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in mine:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    found.append(handle.read().replace(b"\0", b" ").decode().strip())
            except OSError:
                pass
    return [line for line in found if line]


def probe(context, n=0, m=1, leave=False, sleep=0, sleep_on=None, hog_on=None):
    print(f"trial n={n} started", flush=True)
    tmp = os.environ.get("TMPDIR", "")
    results = {"n": n, "product": n * m, "cwd": sorted(os.listdir(".")),
               "tmp": sorted(os.listdir("/tmp")), "tmpdir": tmp, "others": _others(),
               "host": socket.gethostname()}
    if leave:
        with open(f"left-{n}", "w") as handle:
            handle.write("from an earlier trial")
        with open(f"/tmp/left-{n}", "w") as handle:
            handle.write("from an earlier trial")
        # a grandchild in a session of its own: out of the trial's process group
        subprocess.Popen([sys.executable, "-c", LINGER], start_new_session=True)
    if sleep_on == n:
        print("sleeping past the timeout", flush=True)
        time.sleep(600)
    if hog_on == n:
        hog = []
        while True:
            hog.append(b"x" * (16 << 20))  # written, so really taken
    time.sleep(sleep)
    context.log_results(results)
    print(f"trial n={n} done", flush=True)
