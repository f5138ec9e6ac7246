"""scripts/in-env: what a command sees inside the environment, and its error messages.

These run inside the environment (pytest itself runs through scripts/in-env),
so the rootfs build is not repeated here; a cold build is timed in CI's first run.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
IN_ENV = REPO / "scripts" / "in-env"
NEEDED_GB = int(re.search(r"^NEEDED_GB=(\d+)$", IN_ENV.read_text(), re.M).group(1))


def _run(args, **env):
  return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                        env={**os.environ, **env})


def test_command_runs_in_checkout_with_the_env_first_on_path():
  path_head = os.environ["PATH"].split(os.pathsep)[0]
  assert pathlib.Path(sys.executable).parent == pathlib.Path(path_head)
  assert pathlib.Path.cwd() == REPO
  launcher = shutil.which("tokendrop")
  assert launcher is not None and pathlib.Path(launcher).parent == pathlib.Path(path_head)
  result = _run(["tokendrop", "--help"])
  assert result.returncode == 0 and "demo" in result.stdout


def test_no_mount_of_the_environment_is_visible_outside_the_command():
  env_dir = os.environ["TOKENDROP_ENV_DIR"]
  # PID 1 lives in the host's mount namespace; the command's mounts are private.
  host_mounts = pathlib.Path("/proc/1/mountinfo").read_text()
  assert env_dir not in host_mounts


def test_unknown_mode_is_a_clear_error(tmp_path):
  result = _run([IN_ENV, "true"], TOKENDROP_ENV_MODE="conda", TOKENDROP_ENV_CACHE=tmp_path)
  assert result.returncode == 1
  assert "TOKENDROP_ENV_MODE must be 'venv' or 'rootfs', not 'conda'" in result.stderr


def test_missing_lock_file_names_the_file(tmp_path):
  (tmp_path / "scripts").mkdir()
  shutil.copy(IN_ENV, tmp_path / "scripts" / "in-env")
  result = _run([tmp_path / "scripts" / "in-env", "true"], TOKENDROP_ENV_CACHE=tmp_path / "c")
  assert result.returncode == 1
  assert f"missing {tmp_path}/requirements/lock-test.txt" in result.stderr


def test_full_disk_is_refused_before_building(tmp_path):
  cache = tmp_path / "small"
  cache.mkdir()
  # A 16 MiB tmpfs in a private mount namespace stands in for a full disk.
  script = (f"mount -t tmpfs -o size=16m none {cache} && "
            f"TOKENDROP_ENV_MODE=venv TOKENDROP_ENV_CACHE={cache} {IN_ENV} true")
  # The chroot's root is no mount point, so propagation stays as in-env set it: private.
  result = _run(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script])
  assert result.returncode == 1, result.stderr
  assert (f"only 0 GB free in {cache}; building the environment needs about {NEEDED_GB} GB"
          in result.stderr)
  assert "TOKENDROP_ENV_CACHE" in result.stderr


def test_rootfs_mode_without_root_says_what_to_do():
  # pytest's tmp_path is root's alone; the unprivileged user below needs a path it can reach.
  with tempfile.TemporaryDirectory() as cache:
    # A full cache disk too: the missing root is the first thing said, whatever the disk holds.
    script = (f"mount -t tmpfs -o size=16m,mode=0777 none {cache} && "
              f"HOME={cache} TOKENDROP_ENV_MODE=rootfs TOKENDROP_ENV_CACHE={cache} "
              f"setpriv --reuid=65534 --regid=65534 --clear-groups {IN_ENV} true")
    os.chmod(cache, 0o755)
    result = _run(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script])
  assert result.returncode == 1, result.stderr
  assert "needs root (debootstrap, unshare, chroot)" in result.stderr
  assert "glibc >= 2.39" in result.stderr
  assert "GB free" not in result.stderr
