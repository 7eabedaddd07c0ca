"""Handlers for the swarm tests: deterministic, small, stdlib only."""

import time


def nap(context, seconds: float = 60):
    print("napping", flush=True)
    time.sleep(seconds)


def secret_nap(context, seconds: float = 4):
    value = context.get_secret("RY_TEST_SECRET")
    context.log_result("length", len(value or ""))
    print("read the secret", flush=True)
    time.sleep(seconds)


def picky(context, x: int = 1):
    if x == 2:
        raise ValueError("two is refused")
    context.log_result("square", x * x)


def reach(context, host: str = "172.17.0.1", port: int = 5000):
    """Whether a TCP connection to host:port gets anywhere (refused counts: it got there)."""
    import socket

    try:
        socket.create_connection((host, port), timeout=3).close()
        return {"reached": True}
    except ConnectionRefusedError:
        return {"reached": True}
    except OSError as error:
        return {"reached": False, "error": type(error).__name__}


def staged(context, seconds: float = 0, fill: int = 0):
    """Read the inputs, write in the working and temporary folders (`fill` bytes into the
    working folder: whether its disk stops that), leave an artifact made there; then nap
    (a moment to `docker service inspect` the run)."""
    import hashlib
    import os
    import tempfile

    if fill:
        try:
            with open("filler", "wb") as handle:
                for _ in range(fill // 65536):
                    handle.write(b"0" * 65536)
                    handle.flush()
            context.log_result("filled", True)
        except OSError:
            context.log_result("filled", False)
        os.remove("filler")

    for name, item in sorted(context.inputs.items()):
        with open(item.local_path(), "rb") as handle:
            context.log_result(name, "sha256:" + hashlib.sha256(handle.read()).hexdigest())
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("scratch\n")
    context.log_result("tmp_in_tmpdir", os.path.dirname(handle.name) == tempfile.gettempdir())
    with open("made.txt", "w") as out:
        out.write("made in the working folder\n")
    context.log_artifact("made", local_path="made.txt")
    time.sleep(seconds)


def leave(context, case, marker=""):
    """Plant a hostile output past the runtime's checks, then end at once: a link to
    `marker` (a file of the runner's host) as an artifact, or an artifact over the limit."""
    import json
    import os

    artifacts = context.artifact_dir
    os.makedirs(artifacts, exist_ok=True)
    if case == "symlink":
        os.symlink(marker, os.path.join(artifacts, "leak.txt"))
    else:
        with open(os.path.join(artifacts, "leak.txt"), "wb") as handle:
            handle.write(b"x" * (2 << 20))
    with open(os.path.join(os.path.dirname(artifacts), "artifacts.json"), "w") as handle:
        json.dump([{"key": "leak", "kind": "file", "path": "leak.txt", "format": None}], handle)
    os._exit(0)
