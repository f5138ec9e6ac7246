"""Pretraining input: tf-models' static-masked records, or packed records masked on the fly.

`masking: static` reads what `official.nlp.data.pretrain_dataloader` reads (the
tf-models v2 feature names) with that loader itself. `masking: dynamic` reads
packed, unmasked sequences (`input_word_ids`, `input_mask`, `input_type_ids`)
and masks them with trainer.masking, a new mask each epoch.
"""

import dataclasses

import tensorflow as tf
from official.common import dataset_fn
from official.nlp.data import data_loader, data_loader_factory, pretrain_dataloader

from trainer import contract, masking

MASKING_MODES = ("static", "dynamic")


@dataclasses.dataclass
class TokenDropPretrainDataConfig(pretrain_dataloader.BertPretrainDataConfig):
  """BertPretrainDataConfig plus on-the-fly masking; the seed's YAML keys all apply."""
  masking: str = "static"
  masking_seed: int = 0
  mask_rate: float = 0.15


def input_files(input_path: str | list[str], what: str) -> list[str]:
  """Expands comma-separated glob patterns; a pattern that matches nothing is an error."""
  patterns = input_path.split(",") if isinstance(input_path, str) else list(input_path)
  patterns = [p.strip() for p in patterns if p.strip()]
  if not patterns:
    raise ValueError(f"{what}.input_path is empty; set it to the TFRecord files, e.g. "
                     f"--params_override={what}.input_path=/data/train-*.tfrecord.gz")
  files = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise FileNotFoundError(f"{what}.input_path pattern {pattern!r} matches no files")
    files.extend(matched)
  return files


@data_loader_factory.register_data_loader_cls(TokenDropPretrainDataConfig)
class TokenDropPretrainDataLoader(data_loader.DataLoader):
  """Static: tf-models' BertPretrainDataLoader. Dynamic: packed records masked here."""

  def __init__(self, params: TokenDropPretrainDataConfig,
               masking_spec: masking.MaskingSpec | None = None):
    if params.masking not in MASKING_MODES:
      raise ValueError(f"masking must be one of {MASKING_MODES}, got {params.masking!r}")
    if params.masking == "dynamic" and masking_spec is None:
      raise ValueError("dynamic masking needs the vocab's [MASK] and ordinary token ids: set "
                       "task.vocab_file")
    if params.masking == "dynamic" and params.use_next_sentence_label:
      raise ValueError("dynamic masking reads packed sequences, which carry no next-sentence "
                       "labels: set use_next_sentence_label=false, or use masking=static")
    self._params = params
    self._masking_spec = masking_spec

  def load(self, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    if self._params.masking == "static":
      return pretrain_dataloader.BertPretrainDataLoader(self._params).load(input_context)
    return self._load_dynamic(input_context)

  def _load_dynamic(self, input_context):
    params = self._params
    what = "task.train_data" if params.is_training else "task.validation_data"
    files = input_files(params.input_path, what)
    seq_length = params.seq_length
    features = {name: tf.io.FixedLenFeature([seq_length], tf.int64)
                for name in (contract.WORD_IDS, contract.INPUT_MASK, contract.TYPE_IDS)}

    num_pipelines, pipeline_id = 1, 0
    if input_context:
      num_pipelines, pipeline_id = (input_context.num_input_pipelines,
                                    input_context.input_pipeline_id)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if params.sharding and num_pipelines > 1:
      if len(files) < num_pipelines:
        raise ValueError(f"{what}.input_path has {len(files)} files for {num_pipelines} input "
                         "pipelines; write at least one file per worker")
      dataset = dataset.shard(num_pipelines, pipeline_id)
    dataset = dataset.interleave(dataset_fn.pick_dataset_fn(params.file_type),
                                 cycle_length=params.cycle_length or 8,
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.map(lambda record: tf.io.parse_single_example(record, features),
                          num_parallel_calls=tf.data.AUTOTUNE)
    if params.is_training:
      dataset = dataset.shuffle(params.shuffle_buffer_size, seed=params.masking_seed + pipeline_id)
      dataset = dataset.repeat()
    # The stream index, made unique per input pipeline, seeds each example's mask.
    seed = params.masking_seed * 1_000_003 + pipeline_id
    dataset = dataset.enumerate().map(
        lambda index, example: masking.mask_example(example, index, self._masking_spec, seed),
        num_parallel_calls=tf.data.AUTOTUNE)
    batch_size = (input_context.get_per_replica_batch_size(params.global_batch_size)
                  if input_context else params.global_batch_size)
    dataset = dataset.batch(batch_size, drop_remainder=params.drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
