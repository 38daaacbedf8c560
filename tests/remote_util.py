"""Remote caches for tests: Debian's nginx with WebDAV PUT on a loopback port, and a server that stalls.

``NginxCache`` runs a real nginx (one process, in the foreground, as the current user) whose
document root is a folder of the test; ``.ci/run`` installs the package. Everything listens on
127.0.0.1 only and is stopped by the test that started it.
"""
from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
PREFIX = "navbuild"  # the cache lives under http://127.0.0.1:PORT/navbuild/ (a path prefix must work)

CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    map $http_authorization $navbuild_token_ok {{ default 0; "{authorization}" 1; }}
    map "$request_method:$navbuild_token_ok:{need_token}" $navbuild_denied {{ default 0; "PUT:0:1" 1; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        client_max_body_size 0;
        if ($navbuild_denied) {{ return 401; }}
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"""


def require_nginx() -> str:
    import pytest  # here, so that benchmarks can start an nginx without pytest

    if NGINX is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed, and CI must test the remote cache against it (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx-full; .ci/run installs it)")
    return NGINX


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class NginxCache:
    """nginx serving ``root/www`` with PUT; with ``token``, a PUT needs ``Authorization: Bearer TOKEN``."""

    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        for folder in ("www/" + PREFIX, "tmp"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{PREFIX}"

    @property
    def folder(self) -> Path:
        """Where the cache's ``ac/`` and ``cas/`` lie on disk (also usable as a file:// cache)."""
        return self.root / "www" / PREFIX

    def start(self) -> NginxCache:
        conf = self.root / "nginx.conf"
        conf.write_text(CONF.format(root=self.root, port=self.port, authorization=f"Bearer {self.token or ''}",
                                    need_token=1 if self.token else 0))
        self.process = subprocess.Popen([require_nginx(), "-p", str(self.root), "-c", str(conf),
                                         "-e", str(self.root / "error.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"nginx did not start: {(self.root / 'error.log').read_text(errors='replace')}")
        return self

    def kill(self) -> None:
        """Gone at once, as a crashed server is: SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def requests(self) -> list[str]:
        """The request lines of the access log (``PUT /navbuild/ac/... HTTP/1.1``)."""
        try:
            text = (self.root / "access.log").read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line.split('"')[1] for line in text.splitlines() if line.count('"') >= 2]

    def entries(self) -> list[Path]:
        return sorted((self.folder / "ac").glob("*")) if (self.folder / "ac").is_dir() else []


class StallingCache:
    """A cache that answers ``ac/`` requests from a folder and stalls halfway through every object body,
    as a server that hangs mid-transfer does. Stops when the test calls ``stop``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.release = threading.Event()
        handler = self._handler()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.stalled = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self):
        cache = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.send_response(404)
                self.end_headers()

            def do_PUT(self) -> None:
                self.send_response(403)
                self.end_headers()

            def do_GET(self) -> None:
                path = cache.folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if "/cas/" not in self.path:
                    self.wfile.write(data)
                    return
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                cache.stalled += 1
                cache.release.wait(60)  # hang with the connection open

        return Handler

    def start(self) -> StallingCache:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
