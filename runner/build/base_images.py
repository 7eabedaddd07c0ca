"""Make sure the base images the project names are on this machine.

An image already here is left alone. A missing one is pulled. Where no registry
is reachable, `python:3.11*` gets a local stand-in built with debootstrap from
the Debian mirror the host already uses, made to behave like the official image
(`python` and `pip` on PATH, pip usable as root, the host's CA bundle and pip
index trusted). Any other missing image must be brought with `docker load`.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from docker.auth import encode_header, load_config, resolve_authconfig, resolve_repository_name
from docker.utils import parse_repository_tag

from runner.build.engine import DockerEngine, EngineError, Unreachable
from runner.errors import RunyardError

Report = Callable[[str], None]

# Seconds without a byte from the engine before a pull counts as hung; a pull
# that progresses streams a line at least every few seconds.
PULL_IDLE_TIMEOUT = 60.0

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-pip,python3-venv,ca-certificates"
DEBOOTSTRAP_LOG = Path("/var/log/runyard-debootstrap.log")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STAND_IN_LABEL = "dev.runyard.stand-in"
IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    f"ENV SSL_CERT_FILE={CA_BUNDLE}",
    f"ENV PIP_CERT={CA_BUNDLE}",
    f"ENV REQUESTS_CA_BUNDLE={CA_BUNDLE}",
    f"LABEL {STAND_IN_LABEL}=debootstrap",
    'CMD ["python3"]',
)
# As in Debian's slim images: later `apt-get install`s skip docs too.
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
# Run inside the new root: make it behave like the official python image.
FINISH_SCRIPT = """\
[ -e /usr/local/bin/python ] || ln -s /usr/bin/python3 /usr/local/bin/python
[ -e /usr/local/bin/pip ] || ln -s /usr/bin/pip3 /usr/local/bin/pip
rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
rm -rf /var/cache/debconf/*-old /var/log/*.log /root/.cache
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/groff/* /usr/share/lintian/*
find /usr/share/doc -mindepth 2 ! -name copyright ! -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
"""
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host")


class BaseImageOutcome(NamedTuple):
    """What `ensure_base_images` did for one image."""

    image: str
    action: str  # "present" | "pulled" | "built-stand-in"


def ensure_base_images(
    engine: DockerEngine, images: Iterable[str], report: Report
) -> list[BaseImageOutcome]:
    """Make every image present locally; say for each what that took."""
    return [_ensure(engine, image, report) for image in dict.fromkeys(images)]


def _ensure(engine: DockerEngine, image: str, report: Report) -> BaseImageOutcome:
    if _present(engine, image):
        report(f"{image}: present")
        return BaseImageOutcome(image, "present")
    report(f"{image}: pulling")
    error = _pull(engine, image)
    if error is None and _present(engine, image):
        report(f"{image}: pulled")
        return BaseImageOutcome(image, "pulled")
    why = error or "pulled, but still not present"
    if not _has_stand_in(image):
        raise RunyardError(_cannot_pull(image, why))
    _check_can_debootstrap(image, why)
    report(f"{image}: no registry reachable; building a stand-in with debootstrap (a few minutes)")
    _build_python_stand_in(engine, image, report)
    report(f"{image}: built a stand-in from Debian {SUITE}")
    return BaseImageOutcome(image, "built-stand-in")


def _present(engine: DockerEngine, image: str) -> bool:
    return engine.inspect_image(image) is not None


def _pull(engine: DockerEngine, image: str) -> str | None:
    """Pull `image`; None when it worked, else why not.

    An unreachable registry could hang it: it stops after PULL_IDLE_TIMEOUT seconds
    without a word from the engine.
    """
    repository, tag = parse_repository_tag(image)
    registry, _ = resolve_repository_name(repository)
    login = resolve_authconfig(load_config(), registry)
    auth = encode_header(login).decode() if login else None
    try:
        for event in engine.pull(repository, tag or "latest", auth, PULL_IDLE_TIMEOUT):
            if event.get("error"):
                return str(event["error"])
    except Unreachable as error:
        return str(error)
    return None


def _has_stand_in(image: str) -> bool:
    repository, tag = parse_repository_tag(image)
    tag = tag or "latest"
    python = repository in ("python", "library/python", "docker.io/library/python")
    debian_like = not any(word in tag for word in ("alpine", "windows", "nanoserver"))
    return python and debian_like and (tag == "3.11" or tag.startswith(("3.11-", "3.11.")))


def _cannot_pull(image: str, error: str) -> str:
    return (
        f"base image {image} is not on this machine and cannot be pulled "
        f"(no registry is reachable, or it has no such image: {error}). "
        f"On a machine that has it, run "
        f"`docker save {image} -o image.tar`; copy image.tar here and run "
        "`docker load -i image.tar`, then run `runyard setup` again."
    )


# -- the python stand-in -----------------------------------------------------


def _build_python_stand_in(engine: DockerEngine, image: str, report: Report) -> None:
    work = Path(tempfile.mkdtemp(prefix="runyard-stand-in-", dir=_work_parent()))
    try:
        rootfs = work / "rootfs"
        mirror = _debian_mirror(_host_apt_sources())
        report(f"{image}: debootstrap {SUITE} from {mirror} (log: {DEBOOTSTRAP_LOG})")
        _debootstrap(rootfs, mirror)
        _make_official_like(rootfs, mirror)
        report(f"{image}: importing into Docker")
        _import(engine, _pack(rootfs, work / "rootfs.tar"), image)
    finally:
        _remove_work_dir(work)


def _check_can_debootstrap(image: str, why: str) -> None:
    if os.geteuid() != 0:
        raise RunyardError(
            f"{_cannot_pull(image, why)}\n"
            "runyard can build a stand-in for it with debootstrap, but only as root: "
            "run `sudo runyard setup`."
        )
    if shutil.which("debootstrap") is None:
        raise RunyardError(
            f"{_cannot_pull(image, why)}\n"
            "runyard can build a stand-in for it once debootstrap is installed: "
            "`apt-get install -y debootstrap`, then run `runyard setup` again."
        )


def _work_parent() -> str:
    # /tmp is often a tmpfs mounted nodev, where debootstrap's chroot cannot
    # use the device nodes it creates.
    return "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()


def _debootstrap(rootfs: Path, mirror: str) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={PACKAGES}",
        SUITE,
        str(rootfs),
        mirror,
    ]
    with DEBOOTSTRAP_LOG.open("w") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        _keep_inner_log(rootfs / "debootstrap" / "debootstrap.log")
        tail = "\n".join(DEBOOTSTRAP_LOG.read_text(errors="replace").splitlines()[-20:])
        raise RunyardError(
            f"debootstrap failed (exit {done.returncode}); last lines of {DEBOOTSTRAP_LOG}:\n{tail}"
        )


def _keep_inner_log(inner: Path) -> None:
    """Append debootstrap's own log to ours: the work dir holding it is removed."""
    if inner.is_file():
        with DEBOOTSTRAP_LOG.open("a") as log:
            log.write(f"--- {inner.name} ---\n{inner.read_text(errors='replace')}")


def _make_official_like(rootfs: Path, mirror: str) -> None:
    # Everything is written from inside a chroot: the rootfs holds absolute
    # symlinks, which, followed from the host, would point at the host's files.
    files = {
        "/etc/pip.conf": _pip_conf(_host_pip_settings()),
        "/etc/apt/sources.list": _apt_sources(mirror, _host_apt_sources()),
        "/etc/dpkg/dpkg.cfg.d/docker-slim": DPKG_SLIM,
    }
    bundle = _host_ca_bundle()
    if bundle is not None:
        ca_text = bundle.read_text()
        files[CA_BUNDLE] = ca_text
        # a later `update-ca-certificates` (apt runs it when it upgrades
        # ca-certificates) rebuilds the bundle: keep the host's CAs in it
        files["/usr/local/share/ca-certificates/runyard-host-bundle.crt"] = ca_text
    for path, text in files.items():
        _in_chroot(rootfs, 'mkdir -p "$(dirname "$1")" && rm -f "$1" && cat > "$1"', path, text)
    _in_chroot(rootfs, FINISH_SCRIPT)


def _in_chroot(rootfs: Path, script: str, argument: str = "", stdin: str = "") -> None:
    command = ["chroot", str(rootfs), "/bin/sh", "-euc", script, "sh", argument]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RunyardError(f"finishing the stand-in image failed: {done.stderr.strip()}")


def _host_ca_bundle() -> Path | None:
    names = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
    candidates = [os.environ.get(name, "") for name in names] + [CA_BUNDLE]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def _host_pip_settings() -> dict[str, str]:
    """index-url, extra-index-url and trusted-host as the host's pip sees them."""
    settings: dict[str, str] = {}
    parser = configparser.RawConfigParser()
    for path in _pip_config_files():
        try:
            parser.read(path)
        except configparser.Error:
            continue
    for section in ("global", "install"):
        if parser.has_section(section):
            settings.update({k: v for k, v in parser.items(section) if k in PIP_KEYS})
    for key in PIP_KEYS:
        value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            settings[key] = value
    return {key: kept for key, value in settings.items() if (kept := _http_only(key, value))}


def _pip_config_files() -> list[Path]:
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    home = Path.home()
    xdg_home = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config"))
    files = [Path(d) / "pip/pip.conf" for d in xdg_dirs if d]
    files += [Path("/etc/pip.conf"), home / ".pip/pip.conf", xdg_home / "pip/pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return files


def _http_only(key: str, value: str) -> str:
    """Drop what the container cannot use: file:// indexes and other local paths."""
    words = value.split()
    if key != "trusted-host":
        words = [w for w in words if w.startswith(("http://", "https://"))]
    return " ".join(words)


def _pip_conf(settings: dict[str, str]) -> str:
    lines = ["[global]", f"cert = {CA_BUNDLE}"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


class AptSource(NamedTuple):
    uri: str
    suites: tuple[str, ...]


def _host_apt_sources() -> list[AptSource]:
    root = Path("/etc/apt")
    sources: list[AptSource] = []
    for path in [root / "sources.list", *sorted(root.glob("sources.list.d/*"))]:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            sources += _deb822_sources(text)
        elif path.suffix == ".list":
            sources += _one_line_sources(text)
    return [s for s in sources if s.uri.startswith(("http://", "https://"))]


def _one_line_sources(text: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            sources.append(AptSource(words[1].rstrip("/"), (words[2],)))
    return sources


def _deb822_sources(text: str) -> list[AptSource]:
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, colon, value = line.partition(":")
            if colon and not line.startswith(("#", " ", "\t")):
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            suites = tuple(fields.get("suites", "").split())
            sources += [AptSource(u.rstrip("/"), suites) for u in fields.get("uris", "").split()]
    return sources


def _debian_mirror(sources: list[AptSource]) -> str:
    for source in sources:
        if SUITE in source.suites:
            return source.uri
    for source in sources:
        if source.uri.endswith("/debian"):
            return source.uri
    return DEFAULT_MIRROR


def _apt_sources(mirror: str, host: list[AptSource]) -> str:
    """The image's apt sources: bookworm from `mirror`, plus updates and security
    where the host has them (a mirror may not carry them)."""
    lines = [f"deb {mirror} {SUITE} main"]
    for suite in (f"{SUITE}-updates", f"{SUITE}-security"):
        uri = next((s.uri for s in host if suite in s.suites), None)
        if uri:
            lines.append(f"deb {uri} {suite} main")
    return "\n".join(lines) + "\n"


def _pack(rootfs: Path, tarball: Path) -> Path:
    command = [
        "tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball),
        # the engine mounts its own /dev, /proc and /sys
        "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
        ".",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RunyardError(f"packing the stand-in's root file system failed: {done.stderr}")
    return tarball


def _import(engine: DockerEngine, tarball: Path, image: str) -> None:
    repository, tag = parse_repository_tag(image)
    try:
        for event in engine.import_image(tarball, repository, tag or "latest", IMPORT_CHANGES):
            if event.get("error"):
                raise RunyardError(f"docker import of the stand-in for {image} failed: "
                                   f"{event['error']}")
    except EngineError as error:
        raise RunyardError(f"docker import of the stand-in for {image} failed: {error}") from error
    if not _present(engine, image):
        raise RunyardError(f"docker import of the stand-in for {image} left no image")


def _remove_work_dir(work: Path) -> None:
    """Remove the work dir, never following a mount a killed debootstrap left
    behind (rmtree would delete through it, e.g. into a bind-mounted /dev)."""
    for mount in _mounts_under(work):
        subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)
    if not _mounts_under(work):
        shutil.rmtree(work, ignore_errors=True)


def _mounts_under(work: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].replace("\\040", " ") for line in lines if len(line.split()) > 1]
    prefix = f"{work}/"
    # deepest first, so nested mounts come off before their parents
    return sorted((p for p in points if p.startswith(prefix)), reverse=True)
