"""A second Docker engine on this machine, joined to the local swarm as a worker.

The manager was made with `docker swarm init --advertise-addr 127.0.0.1` and the registry
listens on 127.0.0.1:5000 only; a second engine in the host's network namespace would
clash with the first (ports 2377, 7946, 4789), so it gets a network namespace of its own:

- a veth pair, HOST_ADDRESS on the host's end, WORKER_ADDRESS on the worker's;
- in the namespace, 127.0.0.1:2377 and 127.0.0.1:5000 are sent to the host's end (the
  worker learns the manager as 127.0.0.1:2377, and a run's image is 127.0.0.1:5000/...);
- on the host, what comes in on the veth for port 5000 is sent to 127.0.0.1:5000;
- the engine (its own --data-root, --exec-root, socket and pidfile) runs with its own
  hostname (a UTS namespace) but the host's mounts: a run's bind mounts are there too.

It joins as `pause` (no task of anyone's lands on it), labelled `runyard-test-worker`;
`accepting()` makes it active while a test places a run on it. Everything is undone on
leaving: the node leaves and is removed, the engine stopped, the namespace, the rule and
the folders removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

HOST_ADDRESS, WORKER_ADDRESS, PREFIX = "10.231.77.1", "10.231.77.2", 24
LABEL = "runyard-test-worker"
FORWARDED = ("2377", "5000")  # the manager, the registry


class Worker(NamedTuple):
    node: str  # its node id in the swarm
    hostname: str
    docker: tuple[str, ...]  # the docker command that talks to its engine
    link: str  # the host's end of its veth pair: down, the worker is cut off


def sh(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout.strip()


@contextlib.contextmanager
def swarm_worker() -> Iterator[Worker]:
    suffix = secrets.token_hex(2)
    netns, host_end, worker_end = f"ryw-{suffix}", f"rywh{suffix}", f"ryww{suffix}"
    hostname = f"ryworker-{suffix}"
    data, run = Path(f"/var/lib/ryworker-{suffix}"), Path(f"/run/ryworker-{suffix}")
    docker = ("docker", "-H", f"unix://{run}/docker.sock")
    dnat = ("-t", "nat", "PREROUTING", "-i", host_end, "-p", "tcp", "--dport", "5000",
            "-j", "DNAT", "--to-destination", "127.0.0.1:5000")
    assert HOST_ADDRESS not in sh("ip", "-4", "addr"), f"{HOST_ADDRESS} is taken here"
    _remove_stale_workers()
    engine: subprocess.Popen[bytes] | None = None
    node = None
    try:
        _network(netns, host_end, worker_end)
        sh("iptables", *dnat[:2], "-I", *dnat[2:])
        run.mkdir(parents=True)
        with (run / "dockerd.log").open("wb") as log:
            engine = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--uts", "sh", "-c",
                 f'hostname {hostname} && exec dockerd --data-root {data} --exec-root {run} '
                 f'-H unix://{run}/docker.sock --pidfile {run}/docker.pid'],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for(lambda: subprocess.run([*docker, "version"], capture_output=True)
                  .returncode == 0, "the second engine answering", engine, run)
        token = sh("docker", "swarm", "join-token", "-q", "worker")
        sh(*docker, "swarm", "join", "--token", token, "--availability", "pause",
           "--advertise-addr", WORKER_ADDRESS, "--listen-addr", f"{WORKER_ADDRESS}:2377",
           f"{HOST_ADDRESS}:2377")
        node = sh(*docker, "info", "--format", "{{.Swarm.NodeID}}")
        sh("docker", "node", "update", "--label-add", f"{LABEL}=true", node)
        _wait_for(lambda: _node_state(node) == "ready", "the worker ready", engine, run)
        yield Worker(node, hostname, docker, host_end)
    finally:
        if node is not None:
            sh(*docker, "swarm", "leave", "--force", check=False)
            sh("docker", "node", "rm", "--force", node, check=False)
        if engine is not None:
            _stop(engine, run)
        sh("iptables", *dnat[:2], "-D", *dnat[2:], check=False)
        sh("ip", "netns", "del", netns, check=False)
        sh("ip", "link", "del", host_end, check=False)  # gone with the namespace, mostly
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)


@contextlib.contextmanager
def accepting(worker: Worker) -> Iterator[None]:
    """The worker active (the swarm may place tasks on it) while inside; paused after."""
    try:
        sh("docker", "node", "update", "--availability", "active", worker.node)
        yield
    finally:
        sh("docker", "node", "update", "--availability", "pause", worker.node)


@contextlib.contextmanager
def cut_off(worker: Worker) -> Iterator[None]:
    """The worker cut off from the manager (its link down) while inside."""
    try:
        sh("ip", "link", "set", worker.link, "down")
        yield
    finally:
        sh("ip", "link", "set", worker.link, "up")


def _network(netns: str, host_end: str, worker_end: str) -> None:
    inside = ("ip", "netns", "exec", netns)
    sh("ip", "netns", "add", netns)
    sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", worker_end)
    sh("ip", "link", "set", worker_end, "netns", netns)
    sh("ip", "addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", host_end)
    sh("ip", "link", "set", host_end, "up")
    sh("sysctl", "-qw", f"net.ipv4.conf.{host_end}.route_localnet=1")
    sh(*inside, "ip", "addr", "add", f"{WORKER_ADDRESS}/{PREFIX}", "dev", worker_end)
    sh(*inside, "ip", "link", "set", worker_end, "up")
    sh(*inside, "ip", "link", "set", "lo", "up")
    sh(*inside, "ip", "route", "add", "default", "via", HOST_ADDRESS)
    sh(*inside, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
    sh(*inside, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1", "-p", "tcp",
       "-m", "multiport", "--dports", ",".join(FORWARDED), "-j", "DNAT",
       "--to-destination", HOST_ADDRESS)
    sh(*inside, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "127.0.0.1", "-o",
       worker_end, "-j", "MASQUERADE")


def _node_state(node: str) -> str:
    found = json.loads(sh("docker", "node", "inspect", node))
    return str(found[0]["Status"]["State"])


def _remove_stale_workers() -> None:
    """Nodes a test worker left behind (its process killed before its clean-up): down."""
    for line in sh("docker", "node", "ls", "--format", "{{.ID}} {{.Hostname}}").splitlines():
        node, _, hostname = line.partition(" ")
        if hostname.startswith("ryworker-") and _node_state(node) != "ready":
            sh("docker", "node", "rm", "--force", node, check=False)


def _wait_for(ready: Callable[[], bool], what: str, engine: subprocess.Popen[bytes],
              run: Path, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        if engine.poll() is not None or time.monotonic() > deadline:
            log = (run / "dockerd.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"{what}: never (engine exit {engine.poll()})\n{log}")
        time.sleep(0.3)


def _stop(engine: subprocess.Popen[bytes], run: Path) -> None:
    """Stop the second dockerd (it stops its containerd, and its containers with it)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(engine.pid, signal.SIGTERM)
    try:
        engine.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(engine.pid, signal.SIGKILL)
        engine.wait(timeout=10)
