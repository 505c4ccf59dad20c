"""The artifact store: file lists in manifests, damaged artifacts, input-file digests."""

import dataclasses
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from pipeline.artifacts import MANIFEST, ArtifactStore, source_digests
from pipeline.config import PipelineConfig
from pipeline.runner import Stage, run_pipeline

OLD_NS = 1_600_000_000 * 10**9  # September 2020: long settled


def _publish(tmp_path) -> tuple[ArtifactStore, Path]:
    store = ArtifactStore(tmp_path)
    staging = store.staging_dir("stage")
    (staging / "a.txt").write_bytes(b"abc")
    (staging / "sub").mkdir()
    (staging / "sub" / "b.bin").write_bytes(b"12345")
    return store, store.publish(staging, "stage", "fp", {"result": {}})


def test_publish_lists_every_file_with_its_size(tmp_path):
    store, path = _publish(tmp_path)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["files"] == {"a.txt": 3, "sub/b.bin": 5}
    assert store.lookup("stage", "fp") == path


def test_a_deleted_file_makes_the_artifact_incomplete_and_the_warning_names_it(tmp_path, caplog):
    store, path = _publish(tmp_path)
    (path / "sub" / "b.bin").unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert store.lookup("stage", "fp") is None
    assert f"damaged artifact {path} (sub/b.bin is missing)" in caplog.text


def test_a_truncated_file_makes_the_artifact_incomplete(tmp_path, caplog):
    store, path = _publish(tmp_path)
    (path / "a.txt").write_bytes(b"a")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert store.lookup("stage", "fp") is None
    assert "(a.txt has 1 bytes, not 3)" in caplog.text


def test_a_manifest_without_a_file_list_is_trusted_as_before(tmp_path):
    store = ArtifactStore(tmp_path)
    path = store.path("stage", "fp")
    path.mkdir(parents=True)
    (path / MANIFEST).write_text(json.dumps({"stage": "stage", "fingerprint": "fp"}))
    assert store.lookup("stage", "fp") == path


@dataclasses.dataclass
class Done:
    rows: int


def test_the_runner_rebuilds_a_damaged_artifact_in_place(tmp_path, caplog):
    calls = []

    def write(cfg, inputs, out, beam_args):
        calls.append(out.name)
        (out / "train-00000.tfrecord").write_bytes(b"rows")
        (out / "train-00001.tfrecord").write_bytes(b"more rows")
        return Done(2)

    stage = Stage("ingest", (), write, lambda c: {}, lambda: [sys.modules[__name__]])
    first = run_pipeline(PipelineConfig(), tmp_path, [stage])["stages"]["ingest"]
    artifact = tmp_path / "artifacts" / "ingest" / first["artifact_dir"].rsplit("/", 1)[1]
    (artifact / "train-00001.tfrecord").unlink()
    (artifact / "notes.txt").write_text("a file the manifest does not list is not damage")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        second = run_pipeline(PipelineConfig(), tmp_path, [stage])["stages"]["ingest"]
    assert second["status"] == "ran" and second["artifact_dir"] == first["artifact_dir"]
    assert "train-00001.tfrecord is missing" in caplog.text
    assert (artifact / "train-00001.tfrecord").read_bytes() == b"more rows"
    assert len(calls) == 2 and calls[1].startswith(".partial-")
    third = run_pipeline(PipelineConfig(), tmp_path, [stage])["stages"]["ingest"]
    assert third["status"] == "cached" and len(calls) == 2


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_digests_follow_content_not_timestamps(tmp_path):
    data, cache = tmp_path / "pairs.tsv", tmp_path / "wd" / "digests.json"
    cache.parent.mkdir()
    data.write_bytes(b"Hello.\tHallo.\n")
    first = source_digests([("path", str(data))], cache)
    assert first == [["path", str(data), _sha(b"Hello.\tHallo.\n")]]
    data.write_bytes(b"Hello!\tHallo.\n")  # one byte, same size, maybe the same mtime tick
    assert source_digests([("path", str(data))], cache)[0][2] == _sha(b"Hello!\tHallo.\n")
    os.utime(data, ns=(OLD_NS, OLD_NS))  # touched only
    assert source_digests([("path", str(data))], cache)[0][2] == _sha(b"Hello!\tHallo.\n")


def test_a_settled_file_is_hashed_once_by_path_size_and_mtime(tmp_path):
    data, cache = tmp_path / "pairs.tsv", tmp_path / "digests.json"
    data.write_bytes(b"abc\tdef\n")
    os.utime(data, ns=(OLD_NS, OLD_NS))
    source_digests([("path", str(data))], cache)
    entry = {"size": 8, "mtime_ns": OLD_NS, "sha256": _sha(b"abc\tdef\n")}
    assert json.loads(cache.read_text()) == {str(data.resolve()): entry}
    # The remembered digest is used while path, size and mtime match: nothing is re-read.
    cache.write_text(json.dumps({str(data.resolve()): {**entry, "sha256": "f" * 64}}))
    assert source_digests([("path", str(data))], cache)[0][2] == "f" * 64
    os.utime(data, ns=(OLD_NS + 1, OLD_NS + 1))
    assert source_digests([("path", str(data))], cache)[0][2] == _sha(b"abc\tdef\n")


def test_a_file_changed_just_now_is_not_remembered(tmp_path):
    data, cache = tmp_path / "pairs.tsv", tmp_path / "digests.json"
    data.write_bytes(b"abc\tdef\n")
    source_digests([("path", str(data))], cache)
    assert json.loads(cache.read_text()) == {}


def test_digests_of_deleted_files_are_forgotten(tmp_path):
    cache = tmp_path / "digests.json"
    for name in ("a.tsv", "b.tsv"):
        (tmp_path / name).write_text(name)
        os.utime(tmp_path / name, ns=(OLD_NS, OLD_NS))
    source_digests([("path", str(tmp_path / "a.tsv")), ("path", str(tmp_path / "b.tsv"))], cache)
    (tmp_path / "a.tsv").unlink()
    source_digests([("path", str(tmp_path / "b.tsv"))], cache)
    assert list(json.loads(cache.read_text())) == [str((tmp_path / "b.tsv").resolve())]
