"""A Docker registry (HTTP API V2), as far as runyard uses it: whether it answers, a
repository's tags, a tag's manifest digest, and deleting a manifest (for pruning the
swarm backend's run images; the registry must allow deletes, and frees the space only
when its garbage collector runs: README "Swarm").

Plain urllib: HTTPS first, then HTTP (Docker itself talks HTTP to a loopback registry);
the login of the Docker configuration (`docker login`) as basic auth, where there is one.
"""

from __future__ import annotations

import base64
import json
import urllib.error
from collections.abc import Iterable
from typing import NamedTuple

from runner.build.engine import registry_login
from runner.errors import RunyardError

# What Docker 20.10 pushes, and the OCI kinds a newer one may: a manifest's digest is
# the registry's own only when asked for in its own kind.
MANIFEST_KINDS = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


class Registry:
    """The registry at `address` (HOST:PORT)."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self.scheme: str | None = None  # found by the first call that gets an answer

    def problem(self) -> str | None:
        """Why the registry does not answer as one, or None when it does."""
        errors = []
        for scheme in ("https", "http"):
            try:
                answer = self._call(scheme, "GET", "/v2/")
            except OSError as error:
                errors.append(f"{scheme}: {_failure(error)}")
                continue
            if answer.status in (200, 401):  # 401: it answers, and wants a login
                self.scheme = scheme
                return None
            errors.append(f"{scheme}: HTTP {answer.status}")
        return f"the registry {self.address} does not answer ({'; '.join(errors)})"

    def tags(self, repository: str) -> list[str]:
        """The tags of `repository` (none when the registry has no such repository)."""
        answer = self._request("GET", f"/v2/{repository}/tags/list")
        if answer.status == 404:
            return []
        self._check(answer, f"listing the tags of {repository}")
        return list(json.loads(answer.body).get("tags") or [])

    def digest(self, repository: str, tag: str) -> str | None:
        """The digest of the manifest `repository:tag` points to; None when it is gone."""
        answer = self._request("HEAD", f"/v2/{repository}/manifests/{tag}",
                               {"Accept": MANIFEST_KINDS})
        if answer.status == 404:
            return None
        self._check(answer, f"reading {repository}:{tag}")
        return answer.headers.get("docker-content-digest")

    def delete(self, repository: str, digest: str) -> None:
        """Delete the manifest `digest` of `repository` (every tag on it goes with it)."""
        answer = self._request("DELETE", f"/v2/{repository}/manifests/{digest}")
        if answer.status == 404:
            return  # gone already
        if answer.status == 405:
            raise RunyardError(f"the registry {self.address} does not allow deleting images: "
                               "set `storage: delete: enabled: true` in its configuration")
        self._check(answer, f"deleting {repository}@{digest}")

    def _request(self, method: str, path: str,
                 headers: dict[str, str] | None = None) -> Answer:
        if self.scheme is None:
            problem = self.problem()
            if problem:
                raise RunyardError(problem)
        assert self.scheme is not None
        try:
            return self._call(self.scheme, method, path, headers)
        except OSError as error:
            raise RunyardError(f"the registry {self.address} stopped answering "
                               f"({_failure(error)})") from error

    def _call(self, scheme: str, method: str, path: str,
              headers: dict[str, str] | None = None) -> Answer:
        # Only a swarm's registry is asked anything: urllib's HTTP stack (http.client, email's
        # parser, ssl) is imported then, not with every run that imports this module.
        import http.client
        import urllib.request

        request = urllib.request.Request(f"{scheme}://{self.address}{path}", method=method,
                                         headers={**self._auth(), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return Answer(answer.status, _lower(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as error:  # an answer all the same
            with error:
                return Answer(error.code, _lower(error.headers.items()), error.read())
        except http.client.HTTPException as error:  # a broken answer, as a broken connection
            raise ConnectionError(f"{type(error).__name__}: {error}") from error

    def _auth(self) -> dict[str, str]:
        login = registry_login(self.address)
        if not login:
            return {}
        pair = f"{login['username']}:{login['password']}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}

    def _check(self, answer: Answer, what: str) -> None:
        if answer.status >= 400:
            said = answer.body.decode(errors="replace").strip()[:300]
            raise RunyardError(f"the registry {self.address} refused {what}: HTTP "
                               f"{answer.status} {said}")


def registry_problem(address: str, timeout: float = 5.0) -> str | None:
    """Why the registry at `address` (HOST:PORT) does not answer, or None when it does."""
    return Registry(address, timeout).problem()


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


def _failure(error: Exception) -> str:
    """The name of what went wrong reaching a registry (urllib wraps it in a URLError)."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return type(reason).__name__ if isinstance(reason, BaseException) else str(reason)
