"""Downloader against a real loopback HTTP server with Range support: fetch, verify, resume, unpack, refuse."""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from srprior.commands import data as data_command
from srprior.data import download as dl

pytestmark = pytest.mark.slow  # a loopback HTTP server per test


class _Server:
    """Serves in-memory files on 127.0.0.1, honouring ``Range: bytes=N-``; records what it sent."""

    def __init__(self, files: dict[str, bytes], honour_range: bool = True):
        self.files, self.honour_range = files, honour_range
        self.bytes_sent, self.ranges = 0, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                start, rng = 0, self.headers.get("Range")
                server.ranges.append(rng)
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                server.bytes_sent += len(body) - start  # before writing: the client may finish first
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


CONTENT = {f"pack/Set5/HR/img{i}.png": bytes(range(i, 256)) * 40 for i in range(3)}
CONTENT["pack/B100/HR/x.png"] = b"b100 image"


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pack/", "")
        for name, data in CONTENT.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _archive(server: _Server, name: str, body: bytes, **kw) -> dl.Archive:
    server.files[name] = body
    return dl.Archive(server.url + name, size=len(body), sha256=hashlib.sha256(body).hexdigest(), **kw)


def _check_layout(root: Path) -> None:
    for name, data in CONTENT.items():
        rel = name.removeprefix("pack/").replace("B100/", "BSD100/")
        assert (root / rel).read_bytes() == data


def test_download_verifies_and_unpacks_zip(tmp_path):
    body = _zip()
    with _Server({}) as server:
        archive = _archive(server, "data.zip", body, strip="pack/", rename=(("B100/", "BSD100/"),))
        dl.download([archive], tmp_path, progress=False)
        assert server.bytes_sent == len(body) and server.ranges == [None]
        _check_layout(tmp_path)
        state = tmp_path / dl.STATE_DIR
        assert sorted(p.name for p in state.iterdir()) == ["data.zip.done"]  # archive removed after unpack
        assert dl.download([archive], tmp_path, progress=False) == []  # done marker: nothing fetched again
        assert server.bytes_sent == len(body)


def test_resume_fetches_only_the_missing_bytes(tmp_path):
    body = _tar({f"pack/{k.removeprefix('pack/')}": v for k, v in CONTENT.items()})
    have = len(body) * 2 // 5
    state = tmp_path / dl.STATE_DIR
    state.mkdir()
    (state / "data.tar.part").write_bytes(body[:have])
    with _Server({}) as server:
        archive = _archive(server, "data.tar", body, strip="pack/", rename=(("B100/", "BSD100/"),))
        dl.download([archive], tmp_path, progress=False, keep_archives=True)
        assert server.ranges == [f"bytes={have}-"]
        assert server.bytes_sent == len(body) - have
    assert (state / "data.tar").read_bytes() == body
    _check_layout(tmp_path)


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    body = _zip()
    state = tmp_path / dl.STATE_DIR
    state.mkdir()
    (state / "data.zip.part").write_bytes(body[:100])
    with _Server({}, honour_range=False) as server:
        archive = _archive(server, "data.zip", body, strip="pack/")
        path = dl.fetch(archive, state, progress=False)
        assert server.bytes_sent == len(body)
    assert path.read_bytes() == body


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path):
    body = _zip()
    with _Server({}) as server:
        good = _archive(server, "data.zip", body, strip="pack/")
        bad = dl.Archive(good.url, size=len(body), sha256="0" * 64, strip="pack/")
        with pytest.raises(dl.ChecksumError, match=r"data\.zip: sha256 [0-9a-f]{64} != expected 0{64}"):
            dl.download([bad], tmp_path, progress=False)
    state = tmp_path / dl.STATE_DIR
    assert list(state.iterdir()) == []  # neither the final archive nor a corrupt .part remains
    assert not (tmp_path / "Set5").exists()


def test_size_only_entry_prints_the_computed_hash(tmp_path, capsys):
    body = _zip()
    with _Server({"data.zip": body}) as server:
        path = dl.fetch(dl.Archive(server.url + "data.zip", size=len(body)), tmp_path, progress=False)
    assert path.read_bytes() == body
    assert hashlib.sha256(body).hexdigest() in capsys.readouterr().out


def test_incomplete_download_keeps_part_for_resume(tmp_path):
    body = _zip()
    with _Server({"data.zip": body[:-10]}) as server:  # server has fewer bytes than the table says
        archive = dl.Archive(server.url + "data.zip", size=len(body))
        with pytest.raises(dl.DownloadError, match="rerun to resume"):
            dl.fetch(archive, tmp_path, progress=False)
    assert (tmp_path / "data.zip.part").stat().st_size == len(body) - 10


def test_member_escaping_root_is_refused(tmp_path):
    body = _tar({"pack/Set5/HR/first.txt": b"ok", "pack/../../evil.txt": b"x", "pack/Set5/HR/last.txt": b"ok"})
    with _Server({}) as server:
        archive = _archive(server, "evil.tar", body, strip="pack/")
        with pytest.raises(dl.DownloadError, match="would escape"):
            dl.download([archive], tmp_path / "root", progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "root" / "Set5").exists()  # nothing unpacked, not even the members before the bad one


def test_symlink_leaving_the_root_is_refused(tmp_path):
    """An existing `root/Set5` link to a folder outside, or a file link under the root, is never written through;
    a link that stays inside the root is followed."""
    body = _tar({f"pack/{k.removeprefix('pack/')}": v for k, v in CONTENT.items()})
    outside, root = tmp_path / "outside", tmp_path / "root"
    outside.mkdir()
    root.mkdir()
    (root / "Set5").symlink_to(outside)
    with _Server({}) as server:
        archive = _archive(server, "data.tar", body, strip="pack/", rename=(("B100/", "BSD100/"),))
        with pytest.raises(dl.DownloadError, match=rf"member 'pack/Set5/HR/img0.png' would be written to "
                                                   rf"{outside}/HR/img0.png, outside {root}, through the symbolic "
                                                   rf"link {root}/Set5 -> {outside}; remove the link"):
            dl.download([archive], root, progress=False)
        assert list(outside.iterdir()) == [] and not (root / dl.STATE_DIR / "data.tar.done").exists()
        (root / "Set5").unlink()
        victim = outside / "victim.png"
        victim.write_bytes(b"keep")
        (root / "Set5" / "HR").mkdir(parents=True)
        (root / "Set5" / "HR" / "img1.png").symlink_to(victim)  # the file itself
        with pytest.raises(dl.DownloadError, match=rf"through the symbolic link {root}/Set5/HR/img1.png -> {victim}"):
            dl.download([archive], root, progress=False)
        assert victim.read_bytes() == b"keep"
        assert not (root / "Set5" / "HR" / "img0.png").exists()  # a refused archive: nothing unpacked
        shutil.rmtree(root / "Set5")
        (root / "real").mkdir()
        (root / "Set5").symlink_to(root / "real")  # stays inside: followed
        dl.download([archive], root, progress=False)
    _check_layout(root)
    assert sorted(p.name for p in (root / "real" / "HR").iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_unwritable_root_is_one_line_before_any_fetch(tmp_path):
    with _Server({}) as server:
        archive = _archive(server, "data.zip", _zip(), strip="pack/")
        for root, why in ((Path("/proc/nope"), "cannot write there (No such file or directory); choose a folder you "
                                                "can write to"),
                          (tmp_path / "file", "exists and is not a folder; choose a folder")):
            (tmp_path / "file").write_bytes(b"")
            with pytest.raises(dl.DownloadError, match=rf"^--root {root}: {re.escape(why)}$"):
                dl.download([archive], root, progress=False)
        assert server.bytes_sent == 0


def test_cli_registers_data_download():
    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "download", "div2k", "--root", "/tmp/x", "--scales", "2"])
    assert args.func is data_command._download and args.dataset == "div2k" and args.scales == [2]
    table = dl.DATASETS["div2k"]
    assert len(table) == 8 and {a.scale for a in table} == {None, 2, 3, 4}
    assert all(a.url.startswith("https://") and a.size and len(a.sha256) == 64 for a in table)
    assert dl.DATASETS["benchmarks"][0].filename == "benchmark.tar"
