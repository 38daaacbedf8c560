"""Where the remote cache is and how a build may use it.

Three sources, each overriding the one before: ``[cache]`` in navbuild.toml, the environment
(``NAVBUILD_REMOTE_CACHE``, ``NAVBUILD_REMOTE_CACHE_READ_ONLY``) and the command line
(``--remote-cache URL``, ``--remote-cache-read-only``). The write token is never part of the
settings: they name the environment variable that holds it, and only the HTTP client reads it,
so settings can be printed, pickled to a worker process or recorded without leaking it.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

URL_ENV = "NAVBUILD_REMOTE_CACHE"
READ_ONLY_ENV = "NAVBUILD_REMOTE_CACHE_READ_ONLY"
TOKEN_ENV = "NAVBUILD_REMOTE_CACHE_TOKEN"
DEFAULT_TIMEOUT_S = 10.0
HTTP_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class RemoteSettings:
    url: str | None = None
    read_only: bool = False
    token_env: str = TOKEN_ENV  # the variable holding the write token (the token itself is not kept here)
    timeout_s: float = DEFAULT_TIMEOUT_S  # no progress for this long: the cache is given up for the run

    @property
    def display_url(self) -> str:
        """The URL without user, password or query, for messages."""
        return display_url(self.url or "")

    def with_overrides(self, url: str | None = None, read_only: bool = False,
                       environ: Mapping[str, str] | None = None) -> RemoteSettings:
        """These settings after the environment's and then the command line's say."""
        environ = os.environ if environ is None else environ
        settings = self
        if environ.get(URL_ENV):
            settings = replace(settings, url=check_url(environ[URL_ENV], URL_ENV))
        if environ.get(READ_ONLY_ENV, "").lower() in ("1", "true", "yes"):
            settings = replace(settings, read_only=True)
        if url is not None:
            settings = replace(settings, url=check_url(url, "--remote-cache") if url else None)
        if read_only:
            settings = replace(settings, read_only=True)
        return settings


class RemoteSettingsError(ValueError):
    """A bad URL or option; ``where`` names the config key, variable or flag that gave it."""

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where}: {problem}" + (f"\n  fix: {fix}" if fix else ""))


def from_table(table: Mapping[str, Any]) -> RemoteSettings:
    """``[cache]`` of navbuild.toml; raises RemoteSettingsError naming the key."""
    known = {"remote", "read_only", "token_env", "timeout"}
    for key in table:
        if key not in known:
            raise RemoteSettingsError(f"cache.{key}", "unknown key", f"use one of: {', '.join(sorted(known))}")
    url = _typed(table, "remote", str, None)
    read_only = _typed(table, "read_only", bool, False)
    token_env = _typed(table, "token_env", str, TOKEN_ENV)
    timeout = _typed(table, "timeout", (int, float), DEFAULT_TIMEOUT_S)
    if not token_env.replace("_", "").isalnum():
        raise RemoteSettingsError("cache.token_env", f"{token_env!r} is not an environment variable name",
                                  "name the variable that holds the token, never the token itself")
    if not 0 < timeout <= 3600:
        raise RemoteSettingsError("cache.timeout", "must be between 0 and 3600 seconds")
    return RemoteSettings(url=check_url(url, "cache.remote") if url else None, read_only=read_only,
                          token_env=token_env, timeout_s=float(timeout))


def _typed(table: Mapping[str, Any], key: str, kind: Any, default: Any) -> Any:
    value = table.get(key, default)
    if value is default:
        return value
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RemoteSettingsError(f"cache.{key}", f"has the wrong type ({type(value).__name__} {value!r})")
    return value


def check_url(url: str, where: str) -> str:
    """A URL navbuild can use: http(s) with a host, or another scheme that fsspec serves."""
    parts = urlsplit(url)
    if not parts.scheme or "://" not in url:
        raise RemoteSettingsError(where, f"{display_url(url)!r} is not a URL",
                                  "e.g. http://cache.local:8080/navbuild, file:///srv/cache, s3://bucket/prefix")
    if parts.scheme in HTTP_SCHEMES:
        if not parts.hostname:
            raise RemoteSettingsError(where, f"{display_url(url)!r} has no host")
        if parts.query or parts.fragment:
            raise RemoteSettingsError(where, "an HTTP cache URL takes no query or fragment")
        return url
    if importlib.util.find_spec("fsspec") is None:
        raise RemoteSettingsError(where, f"{parts.scheme}:// URLs need fsspec, which is not installed",
                                  "pip install 'navbuild[remote]' (and the fsspec package for that scheme)")
    return url


def display_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]  # never print credentials written into a URL
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
