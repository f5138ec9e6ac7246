"""What a runner tells whoever watches a run: stages starting and ending, and progress.

Both runners report through this one interface: LocalDagRunner's stage reporter (outputs
read from ML Metadata) and the rehearsal (outputs read back from each task's
executor_output.json). The console (pipelines/console.py) is the observer a person sees;
tests record the calls.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class OutputArtifact:
  """One output artifact of a stage: where it is and the properties its component recorded
  (typed and custom properties in one map, by the names the component gave them)."""
  uri: str
  properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# Output key -> the stage's artifacts under that key, e.g. {"statistics": [OutputArtifact]}.
StageOutputs = Mapping[str, Sequence[OutputArtifact]]


class StageObserver(Protocol):

  def stage_started(self, stage: str) -> None:
    """`stage` (a pipeline node id, e.g. "Trainer") started."""

  def stage_finished(self, stage: str, outputs: StageOutputs, cached: bool = False) -> None:
    """`stage` finished with these outputs; cached: its result came from the cache."""

  def progress(self, message: str) -> None:
    """A progress line (contract.PROGRESS_PREFIX and an ETA) from the running stage."""
