"""Real servers for remote-source tests, each started on 127.0.0.1 and stopped after.

- :func:`s3_server`: moto in server mode (an S3-compatible server in its own
  process) with authentication on, and a user whose keys may read and write.
- :func:`http_server`: a web server for a folder, in its own process (GDAL
  may hold the GIL while it waits for an answer), that honours HTTP Range
  requests (what GDAL's ``/vsicurl/`` and fsspec's HTTP file system use) and
  refuses ``/private/...`` with 403.

``python servers.py FOLDER PORT`` runs that web server.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3:
    """A running S3-compatible server and the keys of a user who may use it."""

    endpoint: str
    key: str
    secret: str

    def environ(self) -> dict[str, str]:
        """The standard AWS variables that point clients at this server as that user."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )


@contextmanager
def s3_server() -> Iterator[S3]:
    """moto's S3 server with authentication: the first three requests (making the
    user, its keys and its policy) are free, every later one needs valid keys."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(port, process)
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
            region_name="us-east-1",
        )
        iam.create_user(UserName="segpipe")
        key = iam.create_access_key(UserName="segpipe")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="segpipe", PolicyName="all", PolicyDocument=json.dumps(policy))
        yield S3(endpoint=endpoint, key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{process.args} did not start within 30 s")


class _RangeHandler(SimpleHTTPRequestHandler):
    """Files of a folder, whole or by byte range; ``/private/...`` is forbidden."""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def send_head(self) -> Any:
        if self.path.startswith("/private/"):
            self.send_error(403, "Forbidden")
            return None
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "Not Found")
            return None
        size = path.stat().st_size
        start, end = 0, size - 1
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # the last N bytes
                start = max(size - int(match.group(2)), 0)
            if start > end:
                self.send_error(416, "Requested Range Not Satisfiable")
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        handle = path.open("rb")
        handle.seek(start)
        self._remaining = end - start + 1
        return handle

    def copyfile(self, source: Any, outputfile: Any) -> None:
        left = self._remaining
        while left > 0:
            piece = source.read(min(left, 1 << 16))
            if not piece:
                break
            outputfile.write(piece)
            left -= len(piece)


@contextmanager
def http_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (Range requests honoured); yields the base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, str(folder), str(port)])
    try:
        _wait_for(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    served = ThreadingHTTPServer(
        ("127.0.0.1", int(sys.argv[2])), partial(_RangeHandler, directory=sys.argv[1])
    )
    served.serve_forever()
