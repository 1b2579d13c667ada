"""The settings documents stock SDKs fetch before they send anything, with this collector as their API host.

Why: the browser SDKs and several mobile SDKs will not send a single event until a settings fetch succeeds.
Segment's analytics-next loads ``{cdn}/v1/projects/{writeKey}/settings`` and posts to the ``apiHost`` it finds
in it; analytics-kotlin, analytics-swift and analytics-react-native replace their configured API host with
that same field; RudderStack's JavaScript v3, Android and iOS SDKs fetch ``/sourceConfig`` first and stay
silent while the source is missing or disabled. So each document names this collector as the API host (the
mobile SDKs would otherwise send to Segment), enables no device-mode destination (no third-party script is
ever loaded into the page or app) and turns off the SDKs' own telemetry (which would go to the vendor).

Pure functions over plain values: the route (api/routes/sdk_settings.py) finds the source and the public
address; the README's compatibility table says which SDK reads which field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ["PublicBase", "public_base", "rudderstack_source_config", "segment_settings", "source_id"]

_HOST: Final = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")
_PREFIX: Final = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*$")


@dataclass(frozen=True)
class PublicBase:
    """Where SDKs reach this collector: ``scheme`` and ``host`` (host, optional port, optional path prefix)."""

    scheme: str
    host: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


def public_base(
    public_url: str,
    scheme: str,
    host: str | None,
    forwarded_proto: str | None = None,
    forwarded_host: str | None = None,
) -> PublicBase:
    """The address to write into the documents: ``public_url`` when set (behind a load balancer or a CDN),
    else the request's own scheme and Host, or the first X-Forwarded-Proto/-Host values when the caller trusts
    them. Raises ``ValueError`` for a Host that is not a host name, so no client text ends up in a document
    other SDKs may cache."""
    if public_url:
        parts = urlsplit(public_url)
        path = parts.path.rstrip("/")
        if parts.scheme not in ("http", "https") or not _HOST.match(parts.netloc) or not _PREFIX.match(path):
            raise ValueError(f"not a collector URL: {public_url!r}")
        return PublicBase(parts.scheme, parts.netloc + path)
    if forwarded_proto:
        scheme = forwarded_proto.split(",")[0].strip().lower()
    if forwarded_host:
        host = forwarded_host.split(",")[0].strip()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme: {scheme[:16]!r}")
    if not host or not _HOST.match(host):
        raise ValueError("missing or invalid Host header")
    return PublicBase(scheme, host)


def segment_settings(write_key: str, base: PublicBase) -> dict[str, Any]:
    """Segment's source settings (``/v1/projects/{writeKey}/settings``), as every Segment SDK reads them.

    ``integrations`` holds only the Segment.io destination, whose ``apiHost`` (host and ``/v1``, no scheme, as
    Segment writes it) and ``protocol`` point here; with one integration analytics-next loads no device-mode
    bundle. ``metrics.sampleRate`` 0 keeps analytics-next from posting its own telemetry. The tracking-plan
    defaults let every event through.
    """
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": f"{base.host}/v1",
                "protocol": base.scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"componentTypes": []},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudderstack_source_config(write_key: str, name: str, created_at_ms: int, base: PublicBase) -> dict[str, Any]:
    """RudderStack's ``/sourceConfig`` answer, as its JavaScript v3, Android and iOS SDKs read it.

    The SDKs need ``source.id``, ``source.config`` (an object) and ``source.destinations`` (an array; empty:
    no device-mode destination) and send nothing unless ``source.enabled``. ``dataplanes`` names this collector
    for every region, so a mobile SDK left with RudderStack's default data plane still sends here. Error and
    metrics reporting (which go to RudderStack) are off.
    """
    created = datetime.fromtimestamp(created_at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    created = created.replace("+00:00", "Z")
    plane = [{"url": base.url, "default": True}]
    return {
        "isHosted": False,
        "source": {
            "id": source_id(write_key),
            "name": name,
            "writeKey": write_key,
            "enabled": True,
            "deleted": False,
            "transient": False,
            "workspaceId": "cdp",
            "sourceDefinitionId": "cdp",
            "createdAt": created,
            "updatedAt": created,
            "config": {"statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}},
            "liveEventsConfig": {"eventUpload": False, "eventUploadTS": 0},
            "destinations": [],
            "connections": [],
            "dataplanes": {"US": plane, "EU": plane},
        },
    }


def source_id(write_key: str) -> str:
    """A stable id for a source that does not repeat its write key (SDKs log and cache it)."""
    return "src_" + hashlib.sha256(write_key.encode()).hexdigest()[:20]
