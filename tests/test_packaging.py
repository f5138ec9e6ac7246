"""The distribution: setup.py builds a wheel with the console script, and the
Dockerfile installs the same pins as the lock."""

import ast
import importlib.metadata
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def _lock_version(lock: str, package: str) -> str:
  text = (REPO / "requirements" / lock).read_text()
  return re.search(rf"^{re.escape(package)}==([^ ;\\]+)", text, re.M).group(1)


def test_wheel_has_packages_and_tokendrop_console_script(tmp_path):
  build = subprocess.run(
      [sys.executable, "-c",
       "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))",
       str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert build.returncode == 0, build.stderr
  wheel = tmp_path / build.stdout.strip().splitlines()[-1]
  names = zipfile.ZipFile(wheel).namelist()
  for module in ("trainer/vocab.py", "components/common/packaged_corpora.py", "pipelines/cli.py"):
    assert module in names
  assert not any(n.startswith("tests/") for n in names)
  entry_points = next(n for n in names if n.endswith("entry_points.txt"))
  assert "tokendrop = pipelines.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_dockerfile_pins_match_the_lock():
  dockerfile = (REPO / "Dockerfile").read_text()
  assert f'"uv=={_lock_version("lock-test.txt", "uv")}"' in dockerfile
  beam = _lock_version("lock.txt", "apache-beam")
  assert f"ARG BEAM_SDK_IMAGE=apache/beam_python3.13_sdk:{beam}\n" in dockerfile
  assert "--require-hashes /tmp/lock.txt" in dockerfile


def test_locks_agree_on_every_runtime_pin():
  def pins(lock):
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", (REPO / "requirements" / lock)
                           .read_text(), re.M))
  runtime, test = pins("lock.txt"), pins("lock-test.txt")
  assert {name: test.get(name) for name in runtime} == runtime
  for name, version in [("tfx", "1.21.0"), ("tensorflow", "2.21.0"), ("tensorflow-text", "2.21.1"),
                        ("tensorflow-transform", "1.21.0"), ("apache-beam", "2.77.0"),
                        ("tf-models-official", "2.20.0")]:
    assert runtime[name] == version


def _unconditional_pins(lock: str) -> set[str]:
  """Distributions the lock installs on every platform (not those marked sys_platform ==
  'never', which uv writes for what only an overridden-away requirement would pull)."""
  names = set()
  for name, marker in re.findall(r"^([A-Za-z0-9_.\-]+)==[^ ;\\]+( ; [^\\\n]*)?", (
      REPO / "requirements" / lock).read_text(), re.M):
    if "sys_platform == 'never'" not in marker:
      names.add(re.sub(r"[-_.]+", "-", name).lower())
  return names


def _imported_modules(package_dir: pathlib.Path) -> set[str]:
  """Top-level names of every module imported anywhere in a package, functions included."""
  modules = set()
  for path in package_dir.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if isinstance(node, ast.Import):
        modules.update(alias.name.split(".")[0] for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        modules.add(node.module.split(".")[0])
  return modules


def test_the_image_lock_installs_everything_the_runtime_code_imports():
  # The image installs requirements/lock.txt alone; the tests run on lock-test.txt, which
  # would hide a runtime import that only the test extra installs.
  installed = _unconditional_pins("lock.txt")
  distributions = importlib.metadata.packages_distributions()
  own = {"trainer", "components", "pipelines"}
  missing = {}
  for package in sorted(own):
    for module in _imported_modules(REPO / package) - own - set(sys.stdlib_module_names):
      names = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [module])}
      if not names & installed:
        missing[module] = sorted(names)
  assert missing == {}, f"imported by runtime code but not installed by lock.txt: {missing}"


def test_the_sdist_dataflow_stages_builds_on_its_own(tmp_path):
  # `--setup_file=./setup.py` makes Beam run `setup.py sdist` and the workers install that
  # sdist; setup.py reads requirements/*.in, so the sdist must carry them. Built from a clean
  # copy of the sources, as in a fresh clone: a checkout's *.egg-info/SOURCES.txt would add
  # files the sdist's own rules leave out.
  clean = tmp_path / "clean"
  for name in ("setup.py", "pyproject.toml", "MANIFEST.in"):
    if (REPO / name).exists():
      clean.mkdir(exist_ok=True)
      shutil.copy(REPO / name, clean / name)
  for name in ("requirements", "configs", "pipelines", "components", "trainer"):
    shutil.copytree(REPO / name, clean / name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
  build = subprocess.run(
      [sys.executable, "-c", "import sys; from setuptools import build_meta; "
       "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path / "dist")],
      cwd=clean, capture_output=True, text=True, timeout=300)
  assert build.returncode == 0, build.stderr
  sdist = tmp_path / "dist" / build.stdout.strip().splitlines()[-1]
  with tarfile.open(sdist) as archive:
    archive.extractall(tmp_path / "unpacked", filter="data")
  (source,) = (tmp_path / "unpacked").iterdir()
  assert (source / "requirements" / "base.in").is_file()
  wheel = subprocess.run(
      [sys.executable, "-c", "import sys; from setuptools import build_meta; "
       "print(build_meta.build_wheel(sys.argv[1]))", str(tmp_path / "wheel")],
      cwd=source, capture_output=True, text=True, timeout=300)
  assert wheel.returncode == 0, wheel.stderr
  names = zipfile.ZipFile(tmp_path / "wheel" / wheel.stdout.strip().splitlines()[-1]).namelist()
  assert "pipelines/cli.py" in names and "configs/miniature.yaml" in names


def test_the_training_image_installs_its_lock_and_the_tpu_build_of_the_same_tensorflow():
  dockerfile = (REPO / "Dockerfile.train").read_text()
  assert f'"uv=={_lock_version("lock-test.txt", "uv")}"' in dockerfile
  assert "--require-hashes /tmp/lock-train.txt" in dockerfile
  tensorflow = _lock_version("lock-train.txt", "tensorflow")
  assert f"ARG TF_VERSION={tensorflow}\n" in dockerfile
  assert f"tensorflow=={tensorflow}\n" in (REPO / "requirements" / "train.in").read_text()
  # Cloud TPU's "TPU software versions" page pairs TensorFlow 2.18.0 with libtpu 1.12.0.
  assert tensorflow == "2.18.0"
  assert "ARG LIBTPU_VERSION=1.12.0\n" in dockerfile and "-o /lib/libtpu.so" in dockerfile
  assert _lock_version("lock-train.txt", "tf-models-official") == tensorflow
  assert 'ENTRYPOINT ["python", "-m", "trainer.job"]' in dockerfile


def _module_file(name: str) -> pathlib.Path | None:
  path = REPO / name.replace(".", "/")
  for candidate in (path.with_suffix(".py"), path / "__init__.py"):
    if candidate.exists():
      return candidate
  return None


def _import_nodes(path: pathlib.Path) -> list[ast.Import | ast.ImportFrom]:
  """A file's imports, functions included, but not those that never run for a caller: under
  `if TYPE_CHECKING:`, or in a package's lazy `__getattr__` (components/__init__.py's)."""
  nodes = []
  pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
  while pending:
    node = pending.pop()
    if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and (
        node.test.id == "TYPE_CHECKING"):
      pending += node.orelse
      continue
    if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
      continue
    if isinstance(node, ast.Import | ast.ImportFrom):
      nodes.append(node)
    pending += ast.iter_child_nodes(node)
  return nodes


def _import_closure(module: str) -> set[pathlib.Path]:
  """The files of this repo that importing `module` and calling its functions can import:
  every own module it imports (functions included), and theirs, and their packages'."""
  own = {"trainer", "components", "pipelines"}
  seen: set[pathlib.Path] = set()
  pending = [module]
  while pending:
    name = pending.pop()
    parts = name.split(".")
    for i in range(1, len(parts) + 1):  # a module imports its packages' __init__ first
      path = _module_file(".".join(parts[:i]))
      if path is None or path in seen:
        continue
      seen.add(path)
      for node in _import_nodes(path):
        if isinstance(node, ast.Import):
          pending += [a.name for a in node.names if a.name.split(".")[0] in own]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
            node.module.split(".")[0] in own):
          pending += [f"{node.module}.{a.name}" if _module_file(f"{node.module}.{a.name}")
                      else node.module for a in node.names]
  return seen


def _imports_of(paths) -> set[str]:
  modules = set()
  for path in paths:
    for node in _import_nodes(path):
      if isinstance(node, ast.Import):
        modules.update(alias.name.split(".")[0] for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        modules.add(node.module.split(".")[0])
  return modules


def test_the_training_lock_installs_everything_the_trainer_and_the_glue_job_import_and_no_tfx():
  # The training image runs `python -m trainer.job` and `python -m components.glue_eval.job`.
  installed = _unconditional_pins("lock-train.txt")
  assert not installed & {"tfx", "apache-beam", "tensorflow-transform", "ml-metadata"}
  distributions = importlib.metadata.packages_distributions()
  glue_job = _import_closure("components.glue_eval.job")
  assert REPO / "components/glue_eval/finetune.py" in glue_job
  assert not any(path.is_relative_to(REPO / "pipelines") for path in glue_job)
  missing = {}
  for module in ((_imported_modules(REPO / "trainer") | _imports_of(glue_job))
                 - {"trainer", "components"} - set(sys.stdlib_module_names)):
    names = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [module])}
    if not names & installed:
      missing[module] = sorted(names)
  assert missing == {}, f"imported by trainer/ or the GLUE job but not installed by " \
                        f"lock-train.txt: {missing}"
