"""A trial for the worker tests: reports what it finds of earlier trials, and can leave
files and a process behind, sleep past its timeout or take too much memory."""

import ctypes
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


def _sysv_segments():
    with open("/proc/sysvipc/shm") as table:
        return len(table.read().splitlines()) - 1


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
               "shm": sorted(os.listdir("/dev/shm")), "sysv_shm": _sysv_segments(),
               "host": socket.gethostname()}
    if leave:
        with open(f"left-{n}", "w") as handle:
            handle.write("from an earlier trial")
        ctypes.CDLL(None).shmget(0, 4096, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
        for folder in ("/tmp", "/dev/shm"):
            with open(f"{folder}/left-{n}", "w") as handle:
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


def _try(action):
    try:
        action()
    except OSError as error:
        return type(error).__name__
    return "done"


def _write(path):
    with open(path, "a") as handle:
        handle.write("changed by a trial")


def attack(context, data=None):
    """What a trial may do to its worker and the trials after it: everything should be refused."""
    def read_fork_server_fds():
        os.listdir("/proc/1/fd")

    def read_fork_server_environ():
        with open("/proc/1/environ", "rb") as handle:
            handle.read()

    context.log_results({
        "input": _try(lambda: _write(data.local())),
        "spec": _try(lambda: _write("/runyard/trial/spec.json")),
        "control_in": _try(lambda: os.close(os.open("/runyard/control/in",
                                                    os.O_WRONLY | os.O_NONBLOCK))),
        "control_out": _try(lambda: os.close(os.open("/runyard/control/out",
                                                     os.O_RDONLY | os.O_NONBLOCK))),
        "server_fds": _try(read_fork_server_fds),
        "server_environ": _try(read_fork_server_environ),
        "code": _try(lambda: _write("/runyard/code/src/probe.py")),
        "root": _try(lambda: _write("/etc/passwd")),
        "input_mount": _try(lambda: _write("/runyard/inputs/new-file")),
        "read_only": sorted(path for path in ("/runyard/trial", "/runyard/inputs",
                                              "/runyard/secrets", "/runyard/code", "/runyard/work",
                                              "/runyard/outputs", "/tmp", "/runyard/log")
                            if os.statvfs(path).f_flag & os.ST_RDONLY),
    })
