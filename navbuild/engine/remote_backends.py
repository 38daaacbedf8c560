"""How bytes travel to and from a remote cache: HTTP in Bazel's cache layout, or an fsspec URL.

Both backends offer the same five operations on names ``ac/<64 hex>`` (an action's entry) and
``cas/<64 hex>`` (an object, by its SHA-256), so bazel-remote, nginx with WebDAV, a shared
folder or an object store (s3://, gs://, ... through whichever fsspec implementation is
installed) can hold navbuild's cache. A name that is not there reads as None or False; every
other failure, a timeout included, is ``RemoteUnavailable``, which the caller turns into one
warning and a local build. Nothing read here is trusted: ``remote.py`` checks it.
"""
from __future__ import annotations

import base64
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from navbuild.engine.remote_settings import HTTP_SCHEMES, RemoteSettings, display_url

CHUNK = 1 << 20
# A transfer may take its timeout plus this much time per byte; a server that trickles bytes
# slower than that is given up like one that stalls.
MIN_BYTES_PER_S = 256 * 1024


class RemoteUnavailable(Exception):
    """The cache could not be reached or refused a request; the message never holds a credential."""


class WriteRejected(RemoteUnavailable):
    """The server answered an upload with an error: reads may still work (no or a wrong token)."""


class Backend(Protocol):
    def read_entry(self, name: str, limit: int) -> bytes | None: ...
    def write_entry(self, name: str, data: bytes) -> None: ...
    def has(self, name: str) -> bool: ...
    def download(self, name: str, sink: Callable[[bytes], None], limit: int) -> bool: ...
    def upload(self, name: str, path: Path, size: int) -> None: ...


def open_backend(settings: RemoteSettings) -> Backend:
    assert settings.url is not None
    if urlsplit(settings.url).scheme in HTTP_SCHEMES:
        return HttpBackend(settings.url, os.environ.get(settings.token_env) or None, settings.timeout_s,
                           settings.token_env)
    return FsspecBackend(settings.url, settings.timeout_s)


def _deadline(timeout_s: float, size: int) -> float:
    return time.monotonic() + timeout_s + size / MIN_BYTES_PER_S


def _copy(read: Callable[[int], bytes], sink: Callable[[bytes], None], limit: int, timeout_s: float) -> None:
    """Stream at most ``limit + 1`` bytes into ``sink`` (one more than allowed shows an oversize body)."""
    deadline = _deadline(timeout_s, limit)
    left = limit + 1
    while left > 0:
        chunk = read(min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        sink(chunk)
        if time.monotonic() > deadline:
            raise RemoteUnavailable(f"transfer slower than {MIN_BYTES_PER_S // 1024} KiB/s")


# -- HTTP -----------------------------------------------------------------------------------------
def authorization(token: str) -> str:
    """The Authorization header for a token: ``user:password`` is Basic (htpasswd, bazel-remote),
    a value that already names its scheme is sent as it is, anything else is a Bearer token."""
    if token.split(" ", 1)[0] in ("Bearer", "Basic"):
        return token
    if ":" in token:
        return "Basic " + base64.b64encode(token.encode()).decode()
    return "Bearer " + token


class HttpBackend:
    """Bazel's HTTP cache protocol (GET, HEAD and PUT under ``/ac/`` and ``/cas/``), with urllib."""

    def __init__(self, url: str, token: str | None, timeout_s: float, token_env: str = "") -> None:
        import urllib.request

        class RefuseRedirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None  # a redirect would carry the Authorization header to whatever host it names

        self.base = url.rstrip("/")
        self.timeout_s = timeout_s
        self.token_env = token_env
        self._headers = {"User-Agent": "navbuild"}
        if token:
            self._headers["Authorization"] = authorization(token)
        self._opener = urllib.request.build_opener(RefuseRedirects)

    def __repr__(self) -> str:
        return f"HttpBackend({display_url(self.base)!r})"

    def read_entry(self, name: str, limit: int) -> bytes | None:
        response = self._request("GET", name)
        if response is None:
            return None
        chunks: list[bytes] = []
        with response:
            self._guard(lambda: _copy(response.read, chunks.append, limit, self.timeout_s))
        return b"".join(chunks)

    def write_entry(self, name: str, data: bytes) -> None:
        self._request("PUT", name, data, len(data)).close()

    def has(self, name: str) -> bool:
        response = self._request("HEAD", name)
        if response is None:
            return False
        response.close()
        return True

    def download(self, name: str, sink: Callable[[bytes], None], limit: int) -> bool:
        response = self._request("GET", name)
        if response is None:
            return False
        with response:
            self._guard(lambda: _copy(response.read, sink, limit, self.timeout_s))
        return True

    def upload(self, name: str, path: Path, size: int) -> None:
        with open(path, "rb") as handle:
            self._request("PUT", name, handle, size).close()

    def _request(self, method: str, name: str, data: Any = None, size: int | None = None) -> Any:
        import http.client
        import urllib.error
        import urllib.request

        headers = dict(self._headers)
        if size is not None:
            headers.update({"Content-Length": str(size), "Content-Type": "application/octet-stream"})
        request = urllib.request.Request(f"{self.base}/{name}", data=data, method=method, headers=headers)
        try:
            return self._opener.open(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404 and method in ("GET", "HEAD"):
                return None
            problem = f"{method} /{name.split('/')[0]}/: HTTP {exc.code} {exc.reason}"
            if exc.code in (401, 403):
                problem += f" (the token in ${self.token_env} is missing or not accepted)"
            raise (WriteRejected if method == "PUT" else RemoteUnavailable)(problem) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            raise RemoteUnavailable(f"{method} /{name.split('/')[0]}/: {_reason(exc)}") from None

    def _guard(self, transfer: Callable[[], None]) -> None:
        import http.client

        try:
            transfer()
        except (OSError, http.client.HTTPException, ValueError) as exc:  # a timeout, a reset, a cut body
            raise RemoteUnavailable(f"transfer broken off: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    return str(reason) or type(reason).__name__


# -- fsspec ---------------------------------------------------------------------------------------
class FsspecBackend:
    """Any fsspec URL (file://, memory://, s3://, gs://, ...): the same ``ac/`` and ``cas/`` layout
    under the URL's path. Writes go to a temporary name and are then moved into place, so a reader
    never sees half an entry."""

    def __init__(self, url: str, timeout_s: float) -> None:
        try:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(url)
        except Exception as exc:  # an unknown protocol, a missing implementation, bad options
            raise RemoteUnavailable(f"fsspec cannot open {display_url(url)}: {exc}") from None
        self.url = url
        self.root = self.root.rstrip("/")
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"FsspecBackend({display_url(self.url)!r})"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def read_entry(self, name: str, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        return b"".join(chunks) if self.download(name, chunks.append, limit) else None

    def write_entry(self, name: str, data: bytes) -> None:
        self._put(name, lambda tmp: self.fs.pipe_file(tmp, data))

    def has(self, name: str) -> bool:
        return self._guard(lambda: self.fs.exists(self.path(name)))

    def download(self, name: str, sink: Callable[[bytes], None], limit: int) -> bool:
        def transfer() -> bool:
            try:
                handle = self.fs.open(self.path(name), "rb")
            except FileNotFoundError:
                return False
            with handle:
                _copy(handle.read, sink, limit, self.timeout_s)
            return True

        return self._guard(transfer)

    def upload(self, name: str, path: Path, size: int) -> None:
        self._put(name, lambda tmp: self.fs.put_file(str(path), tmp))

    def _put(self, name: str, write: Callable[[str], None]) -> None:
        final = self.path(name)
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"

        def transfer() -> None:
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            try:
                write(tmp)
                self.fs.mv(tmp, final)
            except BaseException:
                try:
                    self.fs.rm(tmp)
                except Exception:
                    pass
                raise

        self._guard(transfer, writing=True)

    def _guard(self, transfer: Callable[[], Any], writing: bool = False) -> Any:
        try:
            return transfer()
        except RemoteUnavailable:
            raise
        except Exception as exc:  # fsspec implementations raise their own kinds (botocore, aiohttp, OSError)
            raise (WriteRejected if writing and isinstance(exc, PermissionError) else RemoteUnavailable)(
                f"{type(exc).__name__}: {exc}") from None
