"""Remote inputs against an HTTP server on 127.0.0.1: download once, verify, reuse, fail clearly."""

import functools
import hashlib
import http.server
import threading

import pytest

from components.ingest import ingest
from components.remote import RemoteInputError, fetch, localize
from pipeline.config import DataConfig
from tests.conftest import BEAM_ARGS

ROWS = b"Hello.\tHallo.\tCC-BY\nGood night.\tGute Nacht.\tCC-BY\nThank you.\tDanke.\tCC-BY\n"


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; `requests` lists the paths asked for."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "pairs.tsv").write_bytes(ROWS)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256(ROWS).hexdigest()


def test_downloads_once_and_reuses_the_cache(server, tmp_path):
    base, requests = server
    cache = tmp_path / "cache"
    first = fetch(f"{base}/pairs.tsv#sha256={SHA}", cache)
    again = fetch(f"{base}/pairs.tsv#sha256={SHA}", cache)
    assert first == again == cache / SHA / "pairs.tsv"
    assert first.read_bytes() == ROWS
    assert requests == ["/pairs.tsv"]  # the second call never reached the server


def test_checksum_mismatch_stops_and_says_where_to_put_the_file(server, tmp_path):
    base, _ = server
    wrong = "0" * 64
    with pytest.raises(RemoteInputError) as error:
        fetch(f"{base}/pairs.tsv#sha256={wrong}", tmp_path / "cache")
    message = str(error.value)
    assert (
        f"has sha256 {SHA}" in message and str(tmp_path / "cache" / wrong / "pairs.tsv") in message
    )
    assert not list((tmp_path / "cache" / wrong).iterdir())  # nothing half-written is kept


def test_offline_stops_at_once_with_the_place_to_put_the_file(tmp_path):
    closed = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there any more
    with pytest.raises(RemoteInputError, match="cannot download .*place the file"):
        fetch(f"http://127.0.0.1:{port}/pairs.tsv#sha256={SHA}", tmp_path / "cache", timeout=5)


def test_a_url_without_checksum_is_refused(tmp_path):
    with pytest.raises(RemoteInputError, match="needs '#sha256="):
        fetch("https://example.invalid/pairs.tsv", tmp_path)


def test_ingest_reads_a_remote_tsv(server, tmp_path):
    base, requests = server
    cfg = DataConfig(
        format="tsv",
        path=f"{base}/pairs.tsv#sha256={SHA}",
        # Every split needs rows: the same remote file serves as all three.
        validation_path=f"{base}/pairs.tsv#sha256={SHA}",
        test_path=f"{base}/pairs.tsv#sha256={SHA}",
        reject_source_in_other_split=False,
        download_dir=str(tmp_path / "cache"),
    )
    assert localize(cfg).path == str(tmp_path / "cache" / SHA / "pairs.tsv")
    out = tmp_path / "out"
    out.mkdir()
    result = ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)
    assert result.counts == {"train": 3, "validation": 3, "test": 3}
    assert requests == ["/pairs.tsv"]
