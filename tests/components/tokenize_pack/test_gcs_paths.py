"""The output clean-up against GCS's semantics: Beam's own GCS filesystem over the fake storage
client that Beam's tests use, where a directory is only a prefix of object names."""

import datetime

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.gcp import gcsfilesystem, gcsio
from apache_beam.io.gcp.gcsio_test import FakeBlob, FakeGcsClient

from components.tokenize_pack import pipeline

BUCKET = "tokendrop-test"
OUT = f"gs://{BUCKET}/data"
OBJECTS = [".staging/tft/tftransform_tmp/a", ".staging/examples/train-00000", ".staging/x",
           ".staging-kept/y", "stats.json", "train/examples-00000-of-00001.tfrecord.gz"]


@pytest.fixture
def gcs(monkeypatch):
  client = FakeGcsClient()
  bucket = client.create_bucket(BUCKET)
  for name in OBJECTS:
    bucket.add_blob(FakeBlob(f"data/{name}", bucket, size=8, contents=b"contents",
                             updated=datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)))
  io = gcsio.GcsIO(storage_client=client)
  monkeypatch.setattr(gcsfilesystem.GCSFileSystem, "_gcsIO", lambda self: io)
  return bucket


def _names(bucket) -> list[str]:
  return sorted(name.removeprefix("data/") for name in bucket.blobs)


def test_a_prefix_is_not_an_object_on_gcs(gcs):
  # What the old clean-up asked, and why it deleted nothing on GCS.
  assert not FileSystems.exists(f"{OUT}/.staging")


def test_the_staging_prefix_is_deleted_whole_and_nothing_beside_it(gcs):
  pipeline.delete_tree(f"{OUT}/.staging")
  assert _names(gcs) == [".staging-kept/y", "stats.json",
                         "train/examples-00000-of-00001.tfrecord.gz"]
  pipeline.delete_tree(f"{OUT}/.staging")  # absent: nothing to do, no error


def test_a_single_object_is_deleted_by_its_name(gcs):
  pipeline.delete_tree(f"{OUT}/stats.json")
  assert "stats.json" not in _names(gcs) and len(_names(gcs)) == len(OBJECTS) - 1


def test_local_directories_and_files_too(tmp_path):
  (tmp_path / "staging" / "tft").mkdir(parents=True)
  (tmp_path / "staging" / "tft" / "a").write_text("a")
  (tmp_path / "empty").mkdir()
  (tmp_path / "stats.json").write_text("{}")
  for name in ("staging", "empty", "stats.json", "absent"):
    pipeline.delete_tree(str(tmp_path / name))
  assert list(tmp_path.iterdir()) == []


def test_dataflow_refuses_local_paths_before_anything_runs(tmp_path):
  from components.tokenize_pack.config import PrepareDataConfig
  from trainer.errors import UserError

  config = PrepareDataConfig(input_patterns=("packaged:imdb",), output_dir=str(tmp_path / "o"),
                             vocab_file="bert-base-uncased", seq_length=64)
  with pytest.raises(UserError, match=f"--output_dir {tmp_path}/o: a local path, which "
                                      "DataflowRunner's workers cannot reach; give gs:// paths"):
    pipeline.run(config, ["--runner=DataflowRunner", "--project=p", "--region=r"])
  assert not (tmp_path / "o").exists()
