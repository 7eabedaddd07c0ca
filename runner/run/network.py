"""The network the runs a push starts join in place of the engine's default bridge.

On the default bridge a run reaches the internet, and also this host (every service
listening on all of its addresses, through the bridge's gateway), the private networks
around it and a cloud's metadata address (169.254.169.254, with the machine's
credentials). A push runs for everyone who can push: its runs go instead on RUN_NETWORK,
a bridge of runyard's whose runs reach the internet and nothing else. Its firewall (run
as root) rejects what comes in from the bridge for this host, in INPUT, and for the
private, shared, link-local, multicast and reserved addresses (PRIVATE), in Docker's
DOCKER-USER chain (which the engine evaluates before its own rules). Runs on it cannot
reach each other either (no inter-container traffic). The engine resolves names for them
from its resolvers (this host's, or those of its configuration), which DNS may reach.

The rules are checked for each session that uses the network and put back when missing
(a reboot or a firewall reload drops them), and the chain of refused addresses is made
again (the resolvers it lets DNS through to may have changed): five processes of
iptables. An operator whose runs must reach a private service allows it
(--allow-private-network): they then run on the default bridge, as a person's own runs do.
"""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runner.build.engine import DockerEngine, EngineError
from runner.errors import RunyardError

RUN_NETWORK = "runyard-runs"
BRIDGE = "ry-runs0"  # the host's interface of it: the firewall's rules name it
CHAIN = "RUNYARD-RUNS"  # the addresses a run may not reach beyond this host
# private, shared (carrier-grade NAT), link-local (the metadata address), loopback, "this
# network", multicast and reserved IPv4 blocks
PRIVATE = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
           "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3")
_TO_HOST = ("INPUT", "-i", BRIDGE, "-j", "REJECT")
DAEMON_JSON = Path("/etc/docker/daemon.json")
RESOLV_CONF = Path("/etc/resolv.conf")
RESOLVED_CONF = Path("/run/systemd/resolve/resolv.conf")  # systemd-resolved's upstream servers
RESOLVED_STUB = "127.0.0.53"


def run_network(engine: DockerEngine) -> str:
    """RUN_NETWORK, made if it is not there, with its firewall in place."""
    if not engine.networks({"name": [RUN_NETWORK]}):
        try:
            engine.create_network({
                "Name": RUN_NETWORK, "Driver": "bridge", "CheckDuplicate": True,
                "Options": {"com.docker.network.bridge.name": BRIDGE,
                            "com.docker.network.bridge.enable_icc": "false"},
                "Labels": {"dev.runyard.network": "runs"}})
        except EngineError:
            if not engine.networks({"name": [RUN_NETWORK]}):  # not another runner's doing
                raise
    if not Path("/sys/class/net", BRIDGE).exists():  # the engine is on another machine
        raise RunyardError(f"the engine ({engine.host}) is not on this machine, so runyard's "
                           "firewall cannot keep the runs a push starts from that machine and "
                           "its networks: run the runner beside the engine, or let them reach "
                           "those (runyard hook install --allow-private-network)")
    _firewall()
    return RUN_NETWORK


def _firewall() -> None:
    iptables, restore, ip6tables = map(shutil.which, ("iptables", "iptables-restore", "ip6tables"))
    if iptables is None or restore is None:
        raise RunyardError("the runs a push starts need iptables, to keep them from this host "
                           "and its private networks; install it, or let them reach those "
                           "(runyard hook install --allow-private-network)")
    if not _holds(iptables, _TO_HOST):
        _change(iptables, ("-I", *_TO_HOST))
    # in one transaction: a run of another session never finds the chain half made
    _change(restore, ("--noflush",), _chain(_resolvers()))
    forward = "DOCKER-USER" if _iptables(iptables, ("-S", "DOCKER-USER")).returncode == 0 \
        else "FORWARD"
    jump = (forward, "-i", BRIDGE, "-j", CHAIN)
    if not _holds(iptables, jump):
        _change(iptables, ("-I", *jump))
    if ip6tables is not None and not _holds(ip6tables, _TO_HOST):  # the bridge has no IPv6
        _change(ip6tables, ("-I", *_TO_HOST))  # but its link-local addresses


def _chain(nameservers: Sequence[str]) -> str:
    """CHAIN as iptables-restore makes it: DNS to this host's resolvers (the engine asks
    them from the run's network), then every address not on the internet refused."""
    dns = [f"-A {CHAIN} -d {server} -p {protocol} --dport 53 -j RETURN"
           for server in nameservers for protocol in ("udp", "tcp")]
    refused = [f"-A {CHAIN} -d {block} -j REJECT" for block in PRIVATE]
    return "\n".join(["*filter", f":{CHAIN} - [0:0]", f"-F {CHAIN}", *dns, *refused, "COMMIT", ""])


def _resolvers(daemon_json: Path = DAEMON_JSON, resolv_conf: Path = RESOLV_CONF,
               resolved_conf: Path = RESOLVED_CONF) -> list[str]:
    """The IPv4 resolvers the engine asks for its runs, found as it finds them: those of its
    configuration (`dns` in daemon.json), else this host's; and where /etc/resolv.conf
    names systemd-resolved's local stub only, that service's own. A loopback one is no
    resolver from a run's network. (A `--dns` of dockerd's command line is not seen.)"""
    servers = _configured(daemon_json)
    if servers is None:
        servers = _nameservers(resolv_conf)
        if servers == [RESOLVED_STUB]:
            servers = _nameservers(resolved_conf)
    return [server for server in servers if not ipaddress.IPv4Address(server).is_loopback]


def _configured(daemon_json: Path) -> list[str] | None:
    """The IPv4 `dns` servers of the engine's configuration; None when it sets none."""
    try:
        dns = json.loads(daemon_json.read_text(errors="replace")).get("dns")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(dns, list) or not dns:
        return None
    return [str(address) for address in map(_ipv4, dns) if address is not None]


def _nameservers(resolv_conf: Path) -> list[str]:
    """The IPv4 nameservers of a resolv.conf."""
    try:
        lines = resolv_conf.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and (address := _ipv4(words[1])):
            found.append(str(address))
    return found


def _ipv4(text: object) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _holds(program: str, rule: Sequence[str]) -> bool:
    """Whether `program -C RULE` finds the rule."""
    return _iptables(program, ("-C", *rule)).returncode == 0


def _change(program: str, args: Sequence[str], rules: str | None = None) -> None:
    done = _iptables(program, args, rules)
    if done.returncode != 0:
        raise RunyardError(f"cannot set the firewall of the runs a push starts "
                           f"({program} {' '.join(args)}): {done.stderr.strip()}")


def _iptables(program: str, args: Sequence[str],
              rules: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([program, "-w", *args], input=rules, capture_output=True, text=True,
                          timeout=60)
