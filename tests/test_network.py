"""The firewall of the network a push's runs join (runner/run/network.py): the chain it
hands iptables-restore. The runs it keeps from this host and its networks are in
test_hostile_push.py (attack 8b), against a real engine and firewall."""

from __future__ import annotations

from pathlib import Path

from runner.run.network import CHAIN, PRIVATE, _chain, _nameservers, _resolvers


def test_dns_to_the_hosts_resolvers_passes_then_private_addresses_are_refused() -> None:
    lines = _chain(["10.255.255.53"]).splitlines()
    assert lines[:3] == ["*filter", f":{CHAIN} - [0:0]", f"-F {CHAIN}"]
    assert lines[3:5] == [f"-A {CHAIN} -d 10.255.255.53 -p udp --dport 53 -j RETURN",
                          f"-A {CHAIN} -d 10.255.255.53 -p tcp --dport 53 -j RETURN"]
    assert lines[5:-1] == [f"-A {CHAIN} -d {block} -j REJECT" for block in PRIVATE]
    assert lines[-1] == "COMMIT"
    assert {"10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"} <= set(PRIVATE)


def test_the_resolvers_are_the_ipv4_nameservers_of_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# made by hand\nsearch example.org\nnameserver 10.0.0.2\n"
                    "nameserver fd00::53\nnameserver 127.0.0.53 # stub\nnameserver not-an-ip\n"
                    "nameserver\n")
    assert _nameservers(conf) == ["10.0.0.2", "127.0.0.53"]
    assert _nameservers(tmp_path / "missing") == []


def test_the_engines_resolvers_are_found_as_it_finds_them(tmp_path: Path) -> None:
    """Its configuration's (`dns` of daemon.json) first; else this host's, from
    systemd-resolved's own file behind its local stub; never a loopback one."""
    daemon, host, resolved = (tmp_path / name for name in ("daemon.json", "resolv", "resolved"))
    host.write_text("nameserver 127.0.0.53\n")
    resolved.write_text("nameserver 192.168.1.1\nnameserver 10.0.0.2\n")
    assert _resolvers(daemon, host, resolved) == ["192.168.1.1", "10.0.0.2"]
    host.write_text("nameserver 127.0.0.1\nnameserver 10.0.0.9\n")
    assert _resolvers(daemon, host, resolved) == ["10.0.0.9"]
    daemon.write_text('{"dns": ["10.1.1.1", "fd00::1", 53], "log-level": "warn"}')
    assert _resolvers(daemon, host, resolved) == ["10.1.1.1"]
    for unset in ('{"dns": []}', '{"log-level": "warn"}', "not json", "[]"):
        daemon.write_text(unset)
        assert _resolvers(daemon, host, resolved) == ["10.0.0.9"], unset
