"""Does an image exist in its registry? Asked over the registry HTTP API (OCI distribution), so the
check needs no container engine on the client: it is what Batch nodes will pull.

Handles the two auth schemes in use: Basic (the distribution registry with htpasswd) and Bearer
tokens (Azure Container Registry, Docker Hub), following the WWW-Authenticate challenge.
"""

from __future__ import annotations

import re
from typing import Any

from shardrun.images.engine import ImageError, Registry, is_loopback, registry_host

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')
TIMEOUT = 20.0


def _split(ref: str) -> tuple[str, str, str]:
    host = registry_host(ref)
    if host is None:
        raise ImageError(f"image {ref} names no registry; Batch nodes need one like 'myacr.azurecr.io/app:1'")
    rest = ref[len(host) + 1:]
    if "@" in rest:
        repo, tag = rest.split("@", 1)
    else:
        repo, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return host, repo, tag


def image_exists(ref: str, registry: Registry | None, *, session: Any = None) -> bool:
    """True if the registry has `ref`; ImageError for auth or connection problems (no secret shown)."""
    import requests

    host, repo, tag = _split(ref)
    scheme = "http" if registry is not None and not registry.tls_verify and is_loopback(host) else "https"
    http = session or requests.Session()
    url = f"{scheme}://{host}/v2/{repo}/manifests/{tag}"
    auth = None
    if registry is not None and registry.username and registry.password is not None:
        auth = (registry.username, registry.password.reveal())
    headers = {"Accept": MANIFEST_TYPES}
    try:
        resp = http.head(url, headers=headers, timeout=TIMEOUT)
        if resp.status_code == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            if challenge.lower().startswith("bearer"):
                params = dict(CHALLENGE_RE.findall(challenge))
                token = http.get(params.get("realm", ""), auth=auth, timeout=TIMEOUT, params={
                    "service": params.get("service", host), "scope": f"repository:{repo}:pull"})
                if token.status_code in (401, 403):
                    raise ImageError(f"the registry {host} rejected the credentials (HTTP "
                                     f"{token.status_code}); check [image] username and password_secret")
                data = token.json()
                headers["Authorization"] = f"Bearer {data.get('token') or data.get('access_token')}"
                resp = http.head(url, headers=headers, timeout=TIMEOUT)
            else:
                resp = http.head(url, headers=headers, auth=auth, timeout=TIMEOUT)
    except requests.RequestException as err:
        raise ImageError(f"the registry {host} is unreachable ({type(err).__name__})") from err
    if resp.status_code in (401, 403):
        raise ImageError(f"the registry {host} rejected the credentials (HTTP {resp.status_code}); "
                         "check [image] username and password_secret")
    if resp.status_code == 404:
        return False
    if resp.status_code >= 400:
        raise ImageError(f"the registry {host} answered HTTP {resp.status_code} for {ref}")
    return True
