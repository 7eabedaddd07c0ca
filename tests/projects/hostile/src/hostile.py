"""Handlers that misbehave on request: each tries to get something of the runner's host out.

Stdlib only. A job picks the handler and says, with its params, what to try. Handlers
that plant files in the outputs folder end the process with `os._exit(0)`, so the
runtime writes nothing over what they left: that is how an attacker goes around the
runtime's own checks, and what the runner on the host must read with care.
"""

import base64
import json
import os
import socket
import subprocess
import urllib.request

OWN_BYTES = b"the run's own bytes\n"


def echo_inputs(context):
    """Log every input's bytes as a result: whatever the runner fetched leaves with the run."""
    for name, item in sorted(context.inputs.items()):
        with open(item.local_path(), "rb") as handle:
            context.log_result(name, handle.read(4096).decode("utf-8", "replace"))


def fetch(context, url):
    """Fetch `url` from inside the container (a run on the host's network reaches its services)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            context.log_result("got", response.read(4096).decode("utf-8", "replace"))
    except OSError as error:
        context.log_result("error", repr(error))


def reach(context, port, addresses=()):
    """Connect from inside the container to this host's services (at `port` of the network's
    gateway and of each of `addresses`, the host's own) and to a cloud's metadata address."""
    targets = {"gateway": (_gateway(), int(port)), "metadata": ("169.254.169.254", 80)}
    targets.update({f"host {address}": (address, int(port)) for address in addresses})
    for name, target in targets.items():
        with socket.socket() as connection:
            connection.settimeout(3)
            try:
                connection.connect(target)
                connection.sendall(b"ryh-reach\n")
                context.log_result(name, "reached")
            except OSError as error:
                context.log_result(name, repr(error))


def _gateway():
    """The default route's gateway: the host, seen from the container's network."""
    with open("/proc/net/route") as routes:
        for line in routes.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    return "0.0.0.0"


def cat(context, path):
    """Log the file at `path` of the container (what a hostile image build may have put there)."""
    try:
        with open(path, "rb") as handle:
            context.log_result("content", handle.read(4096).decode("utf-8", "replace"))
    except OSError as error:
        context.log_result("missing", repr(error))


def reveal(context, name, hold=0.0):
    """Get secret `name` out every way a handler can: printed, logged base64-encoded,
    returned as results, and in the message of the exception the run ends with."""
    import time

    value = context.get_secret(name)
    if value is None:
        context.log_result("got", False)
        context.log_result("in_environment", name in os.environ)
        return None
    encoded = base64.b64encode(value.encode()).decode()
    print(f"the secret is {value}", flush=True)
    context.logger.info(f"the secret, base64: {encoded}")
    context.log_result("got", True)
    context.log_result("in_environment", any(value in v for v in os.environ.values()))
    context.log_result("secret", value)
    context.log_result("nested", {"deep": [value, {"b64": encoded}]})
    context.log_result(f"key-{value}", 1)
    time.sleep(hold)  # a moment to `docker inspect` the running container
    raise RuntimeError(f"leaking {value} on purpose")


def peek(context, name):
    """A function that does not name the secret: report what of it reached the run anyway."""
    secrets = os.path.join(os.path.dirname(os.path.abspath(os.getcwd())), "secrets")
    context.log_result("got", context.get_secret(name) is not None)
    context.log_result("in_environment", name in os.environ)
    context.log_result("secret_files", sorted(os.listdir(secrets)) if os.path.isdir(secrets) else [])


def odd_text(context):
    """Results no UTF-8 encoder takes: lone surrogates (JSON escapes them, the host reads them
    back), in a value, a key and an error, as a file name's undecodable byte would be."""
    context.log_result("odd", "bad \udcff and \ud800 text")
    context.log_result("key-\udcfe", 1)
    raise ValueError("an error with \udcff in it")


def hold(context, seconds=1.0, case=0):
    """Take up a run's place for `seconds`: how many run at once is what is looked at."""
    import time

    time.sleep(seconds)
    context.log_result("case", case)


def write_input(context):
    """Try to change each input file in place: write, make writable and write, replace."""
    for name, item in sorted(context.inputs.items()):
        path = item.local_path()
        tried = {}
        for how, attempt in (("write", _overwrite), ("chmod", _chmod_write),
                             ("replace", _replace)):
            try:
                attempt(path)
                tried[how] = "changed"
            except OSError as error:
                tried[how] = error.strerror or repr(error)
        context.log_result(name, tried)


def _overwrite(path):
    with open(path, "r+b") as handle:
        handle.write(b"tampered by the run")


def _chmod_write(path):
    os.chmod(path, 0o666)
    _overwrite(path)


def _replace(path):
    os.unlink(path)
    with open(path, "wb") as handle:
        handle.write(b"replaced by the run")


def fill_disk(context, mib=1024):
    """Write `mib` MiB of zeros in the working folder and as much in /tmp; fail if it did not fit."""
    import tempfile

    codes = {}
    for where in (os.getcwd(), tempfile.gettempdir()):
        done = subprocess.run(["dd", "if=/dev/zero", f"of={where}/big", "bs=1M", f"count={mib}"],
                              capture_output=True, text=True)
        codes[where] = done.returncode
        print(f"dd into {where}: exit {done.returncode} {done.stderr.strip()[-200:]}", flush=True)
    if any(codes.values()):
        raise OSError(f"the disk filled up: {codes}")
    context.log_result("written", codes)


def leave(context, case, marker=""):
    """Plant `case` (see CASES) in the outputs folder, then end at once: nothing the
    runtime would write covers it. `marker` is a file of the runner's host."""
    outputs = os.path.dirname(context.artifact_dir)
    artifacts = context.artifact_dir
    os.makedirs(artifacts, exist_ok=True)
    CASES[case](outputs, artifacts, marker)
    os._exit(0)


def _listing(outputs, *entries):
    """artifacts.json with these entries (key, path[, kind])."""
    items = [{"key": key, "kind": "file", "path": path, "format": None} for key, path in entries]
    _write(os.path.join(outputs, "artifacts.json"), json.dumps(items).encode())


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def _plain(outputs, artifacts, key):
    """A harmless file artifacts/x/x.txt, listed under `key`."""
    _write(os.path.join(artifacts, "x", "x.txt"), OWN_BYTES)
    _listing(outputs, (key, "x/x.txt"))


def _up(marker):
    """`marker` as a path relative to the outputs' artifacts folder, on the host: up to / first."""
    return "../" * 40 + marker.lstrip("/")


def _artifact_symlink(outputs, artifacts, marker):
    os.makedirs(os.path.join(artifacts, "leak"))
    os.symlink(marker, os.path.join(artifacts, "leak", "marker.txt"))
    _listing(outputs, ("leak", "leak/marker.txt"))


def _relative_symlink(outputs, artifacts, marker):
    os.makedirs(os.path.join(artifacts, "leak"))
    os.symlink("../" + _up(marker), os.path.join(artifacts, "leak", "marker.txt"))
    _listing(outputs, ("leak", "leak/marker.txt"))


def _folder_symlink(outputs, artifacts, marker):
    os.symlink(os.path.dirname(marker), os.path.join(artifacts, "tree"))
    _listing(outputs, ("tree", "tree"))


def _link_in_folder(outputs, artifacts, marker):
    _write(os.path.join(artifacts, "tree", "ok.txt"), OWN_BYTES)
    os.symlink(marker, os.path.join(artifacts, "tree", "marker.txt"))
    _listing(outputs, ("tree", "tree"))


def _through_folder_link(outputs, artifacts, marker):
    os.symlink(os.path.dirname(marker), os.path.join(artifacts, "hostdir"))
    _listing(outputs, ("leak", "hostdir/" + os.path.basename(marker)))


def _artifacts_folder_link(outputs, artifacts, marker):
    import shutil

    shutil.rmtree(artifacts)
    os.symlink(os.path.dirname(marker), artifacts)
    _listing(outputs, ("leak", os.path.basename(marker)))


def _hardlink(outputs, artifacts, marker):
    own = os.path.join(outputs, "own.txt")
    _write(own, OWN_BYTES)
    os.makedirs(os.path.join(artifacts, "own"))
    os.link(own, os.path.join(artifacts, "own", "own.txt"))
    _listing(outputs, ("own", "own/own.txt"))


def _symlink_file(name):
    def plant(outputs, artifacts, marker):
        os.symlink(marker, os.path.join(outputs, name))
        if name != "artifacts.json":
            _listing(outputs)
    return plant


def _fifo_file(name):
    def plant(outputs, artifacts, marker):
        os.mkfifo(os.path.join(outputs, name))
    return plant


def _fifo_artifact(outputs, artifacts, marker):
    os.makedirs(os.path.join(artifacts, "pipe"))
    os.mkfifo(os.path.join(artifacts, "pipe", "p"))
    _listing(outputs, ("pipe", "pipe/p"))


def _fifo_in_folder(outputs, artifacts, marker):
    _write(os.path.join(artifacts, "tree", "ok.txt"), OWN_BYTES)
    os.mkfifo(os.path.join(artifacts, "tree", "p"))
    _listing(outputs, ("tree", "tree"))


def _oversize_results(outputs, artifacts, marker):
    _write(os.path.join(outputs, "results.json"), json.dumps({"x": "a" * (2 << 20)}).encode())


def _oversize_artifact(outputs, artifacts, marker):
    _write(os.path.join(artifacts, "big", "big.bin"), b"\0" * (2 << 20))
    _listing(outputs, ("big", "big/big.bin"))


def _oversize_folder(outputs, artifacts, marker):
    for index in range(4):
        _write(os.path.join(artifacts, "tree", f"part-{index}.bin"), b"\0" * (400 << 10))
    _listing(outputs, ("tree", "tree"))


def _deep_results(outputs, artifacts, marker):
    _write(os.path.join(outputs, "results.json"), b"[" * 200_000 + b"]" * 200_000)


def _key(key):
    return lambda outputs, artifacts, marker: _plain(outputs, artifacts, key)


def _path(path_of):
    def plant(outputs, artifacts, marker):
        _write(os.path.join(artifacts, "x", "x.txt"), OWN_BYTES)
        _listing(outputs, ("x", path_of(marker)))
    return plant


def _duplicate_key(outputs, artifacts, marker):
    _write(os.path.join(artifacts, "x", "x.txt"), OWN_BYTES)
    _listing(outputs, ("x", "x/x.txt"), ("x", "x/x.txt"))


CASES = {
    # links: the runner must never follow one
    "artifact-symlink": _artifact_symlink,
    "relative-symlink": _relative_symlink,
    "results-symlink": _symlink_file("results.json"),
    "artifacts-json-symlink": _symlink_file("artifacts.json"),
    "error-symlink": _symlink_file("error.json"),
    "folder-symlink": _folder_symlink,
    "link-in-folder": _link_in_folder,
    "through-folder-link": _through_folder_link,
    "artifacts-folder-link": _artifacts_folder_link,
    "hardlink": _hardlink,  # fine: the file it names is the run's own
    # not regular files: the runner must not hang on them
    "fifo-results": _fifo_file("results.json"),
    "fifo-artifacts-json": _fifo_file("artifacts.json"),
    "fifo-error": _fifo_file("error.json"),
    "fifo-artifact": _fifo_artifact,
    "fifo-in-folder": _fifo_in_folder,
    # over the limits
    "oversize-results": _oversize_results,
    "oversize-artifact": _oversize_artifact,
    "oversize-folder": _oversize_folder,
    "deep-results": _deep_results,
    # keys and paths of artifacts.json
    "key-dotdot": _key("../../x"),
    "key-double-slash": _key("a//b"),
    "key-git": _key(".git"),
    "key-slash": _key("a/b"),
    "key-long": _key("k" * 300),
    "key-int": _key(7),
    "key-null": _key(None),
    "key-newline": _key("x\ny"),
    "key-empty": _key(""),
    "key-duplicate": _duplicate_key,
    "path-dotdot": _path(_up),
    "path-absolute": _path(lambda marker: marker),
    "path-inner-dotdot": _path(lambda marker: "x/" + _up(marker)),
    "path-empty": _path(lambda marker: ""),
    "path-nul": _path(lambda marker: "x/x.txt\0"),
}
