"""Downloads against a local HTTP server on 127.0.0.1: good, truncated, wrong-checksum
and unreachable sources; a verified file or nothing is ever left behind."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

import kipd.data as kd
from kipd.data import _datasets
from kipd.data._download import fetch

PAYLOAD = bytes(range(256)) * 64  # 16 KiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.requests.append(self.path)
        if self.path.startswith("/truncated/"):
            # Announces the whole file, sends half, then hangs up.
            body = self.routes[self.path.removeprefix("/truncated")]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture
def server():
    """A local HTTP server; returns (base_url, routes, requests)."""
    routes: dict[str, bytes] = {}
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"routes": routes, "requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_good_download(server, tmp_path):
    base, routes, _ = server
    routes["/f.bin"] = PAYLOAD
    dest = fetch([f"{base}/f.bin"], tmp_path / "sub" / "f.bin", PAYLOAD_SHA, len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]


@pytest.mark.parametrize(
    "route, body, match",
    [
        ("/truncated/f.bin", PAYLOAD, "truncated transfer: received 8192 of 16384 bytes"),
        ("/f.bin", PAYLOAD[:-1], "wrong size: received 16383 bytes, expected 16384"),
        ("/f.bin", PAYLOAD[::-1], "checksum mismatch"),
        ("/missing.bin", None, "HTTP Error 404"),
    ],
    ids=["truncated", "short-file", "wrong-checksum", "not-found"],
)
def test_bad_download_leaves_nothing(server, tmp_path, route, body, match):
    base, routes, _ = server
    if body is not None:
        routes["/f.bin"] = body
    with pytest.raises(kd.DatasetError, match=match) as err:
        fetch([f"{base}{route}"], tmp_path / "f.bin", PAYLOAD_SHA, len(PAYLOAD))
    assert "could not download f.bin" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part


def test_no_network_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/f.bin"
    with pytest.raises(kd.DatasetError, match="Connection refused|URLError"):
        fetch([url], tmp_path / "f.bin", PAYLOAD_SHA, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_falls_back_to_the_next_mirror(server, tmp_path):
    base, routes, requests = server
    routes["/good/f.bin"] = PAYLOAD
    routes["/bad/f.bin"] = PAYLOAD[::-1]
    dest = fetch([f"{base}/bad/f.bin", f"{base}/good/f.bin"], tmp_path / "f.bin", PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and requests == ["/bad/f.bin", "/good/f.bin"]


def test_existing_file_survives_a_failed_download(server, tmp_path):
    base, routes, _ = server
    routes["/f.bin"] = PAYLOAD[::-1]
    (tmp_path / "f.bin").write_bytes(b"previous good copy")
    with pytest.raises(kd.DatasetError):
        fetch([f"{base}/f.bin"], tmp_path / "f.bin", PAYLOAD_SHA)
    assert (tmp_path / "f.bin").read_bytes() == b"previous good copy"


def _serve_mnist(server, files, rng, corrupt: str | None = None):
    """Puts a miniature MNIST on the server and points the built-in table at it."""
    base, routes, _ = server
    remotes = []
    x_train, y_train = files.random_split(rng, 12, (28, 28), 10)
    x_test, y_test = files.random_split(rng, 4, (28, 28), 10)
    arrays = {
        "train-images-idx3-ubyte.gz": x_train,
        "train-labels-idx1-ubyte.gz": y_train,
        "t10k-images-idx3-ubyte.gz": x_test,
        "t10k-labels-idx1-ubyte.gz": y_test,
    }
    for remote in _datasets.BUILTINS["mnist"].files:
        data = gzip.compress(files.idx_bytes(arrays[remote.name]))
        routes[f"/mnist/{remote.name}"] = data[::-1] if remote.name == corrupt else data
        remotes.append(
            dataclasses.replace(
                remote,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                urls=(f"{base}/mnist/{remote.name}",),
            )
        )
    spec = dataclasses.replace(_datasets.BUILTINS["mnist"], files=tuple(remotes))
    return spec, arrays


def test_load_downloads_into_the_cache_once(isolated, server, files, monkeypatch):
    spec, arrays = _serve_mnist(server, files, np.random.default_rng(0))
    monkeypatch.setitem(_datasets.BUILTINS, "mnist", spec)
    ds = kd.load("mnist")
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte.gz"])
    assert sorted(p.name for p in (isolated / "mnist").iterdir()) == sorted(arrays)
    requests = server[2]
    assert len(requests) == 4
    kd.load("mnist")  # from the cache now
    assert len(requests) == 4


def test_load_with_a_corrupt_download(isolated, server, files, monkeypatch):
    spec, _ = _serve_mnist(
        server, files, np.random.default_rng(0), corrupt="t10k-images-idx3-ubyte.gz"
    )
    monkeypatch.setitem(_datasets.BUILTINS, "mnist", spec)
    with pytest.raises(kd.DatasetError) as err:
        kd.load("mnist")
    message = str(err.value)
    assert "MNIST: could not download t10k-images-idx3-ubyte.gz" in message
    assert "checksum mismatch" in message and "To get the files, download" in message
    # The files verified before the failure stay; nothing partial does.
    assert "t10k-images-idx3-ubyte.gz" not in {p.name for p in (isolated / "mnist").iterdir()}
    assert not [p for p in (isolated / "mnist").iterdir() if p.name.startswith(".")]
