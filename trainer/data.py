"""Pretraining input: tf-models' static-masked records, or packed records masked on the fly.

`masking: static` reads what `official.nlp.data.pretrain_dataloader` reads (the
tf-models v2 feature names) with that loader itself. `masking: dynamic` reads
packed, unmasked sequences (`input_word_ids`, `input_mask`, `input_type_ids`)
and masks them with trainer.masking, a new mask each epoch. Which one, and the
other keys the data decides, come from the data's record (trainer/data_spec.py).

Training input is shuffled as Model Garden's InputReader shuffles it: the file list in a new
order every epoch (seeded: the same seed gives the same orders), then the records in a buffer.
The buffer holds SHUFFLE_BUFFER_STEPS steps' worth of examples unless shuffle_buffer_size is
set, so a batch of 512 does not come from the few chunks that the interleave reads at once.
"""

import dataclasses

import tensorflow as tf
from official.common import dataset_fn
from official.nlp.data import data_loader, data_loader_factory, pretrain_dataloader

from trainer import contract, data_spec, masking

# The default shuffle buffer, in steps: at the seed's batch of 512 and seq 512, 8,192 serialized
# records of ~2.5 KB (~20 MB), which span about 19 of the data stage's chunks (~1 MB of text,
# ~430 examples each) where 100 records span one.
SHUFFLE_BUFFER_STEPS = 16
# Files read at once (tf-models' cycle_length) unless cycle_length is set.
DEFAULT_CYCLE_LENGTH = 8


@dataclasses.dataclass
class TokenDropPretrainDataConfig(pretrain_dataloader.BertPretrainDataConfig):
  """BertPretrainDataConfig plus on-the-fly masking; the seed's YAML keys all apply.

  masking_seed seeds dynamic masking and the dynamic loader's file and record shuffles.
  shuffle_buffer_size None: SHUFFLE_BUFFER_STEPS steps' worth of examples (shuffle_buffer).
  """
  masking: str = data_spec.STATIC
  masking_seed: int = 0
  mask_rate: float = 0.15
  shuffle_buffer_size: int | None = None


def shuffle_buffer(params: TokenDropPretrainDataConfig,
                   input_context: tf.distribute.InputContext | None = None) -> int:
  """Records in one input pipeline's shuffle buffer: shuffle_buffer_size, or by default the
  examples that pipeline feeds SHUFFLE_BUFFER_STEPS steps."""
  if params.shuffle_buffer_size is not None:
    return params.shuffle_buffer_size
  pipelines = input_context.num_input_pipelines if input_context else 1
  return SHUFFLE_BUFFER_STEPS * max(1, params.global_batch_size // pipelines)


def file_order(files: list[str], seed: int, is_training: bool, num_pipelines: int = 1,
               pipeline_id: int = 0) -> tf.data.Dataset:
  """The file names one input pipeline reads, in reading order.

  Training: every epoch a new order of the whole list, drawn from `seed`, then this
  pipeline's share, repeated forever. As Model Garden's InputReader, every pipeline shuffles
  with the same seed before sharding, so the pipelines read disjoint files in each epoch and
  each reads other files in the next. Evaluation: the files once, in the order given.
  """
  dataset = tf.data.Dataset.from_tensor_slices(files)
  if is_training:
    dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  if num_pipelines > 1:
    dataset = dataset.shard(num_pipelines, pipeline_id)
  if is_training:
    dataset = dataset.repeat()
  return dataset


def input_patterns(input_path: str | list[str]) -> list[str]:
  """The glob patterns of an input_path: comma-separated, or a list, as Model Garden takes it."""
  patterns = input_path.split(",") if isinstance(input_path, str) else list(input_path)
  return [p.strip() for p in patterns if p.strip()]


def input_files(input_path: str | list[str], what: str) -> list[str]:
  """Expands comma-separated glob patterns; a pattern that matches nothing is an error."""
  patterns = input_patterns(input_path)
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
    if params.masking not in data_spec.MASKINGS:
      raise ValueError(f"masking must be one of {data_spec.MASKINGS}, got {params.masking!r}")
    if params.masking == data_spec.DYNAMIC and masking_spec is None:
      raise ValueError("dynamic masking needs the vocab's [MASK] and ordinary token ids: set "
                       "task.vocab_file")
    if params.masking == data_spec.DYNAMIC and params.use_next_sentence_label:
      raise ValueError("dynamic masking reads packed sequences, which carry no next-sentence "
                       "labels: set use_next_sentence_label=false, or use masking=static")
    self._params = params
    self._masking_spec = masking_spec

  def load(self, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    if self._params.masking == data_spec.STATIC:
      params = self._params.replace(shuffle_buffer_size=shuffle_buffer(self._params,
                                                                       input_context))
      return pretrain_dataloader.BertPretrainDataLoader(params).load(input_context)
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
    num_shards = num_pipelines if params.sharding else 1
    if len(files) < num_shards:
      raise ValueError(f"{what}.input_path has {len(files)} files for {num_shards} input "
                       "pipelines; write at least one file per worker")
    dataset = file_order(files, params.masking_seed, params.is_training, num_shards,
                         pipeline_id if num_shards > 1 else 0)
    dataset = dataset.interleave(dataset_fn.pick_dataset_fn(params.file_type),
                                 cycle_length=params.cycle_length or DEFAULT_CYCLE_LENGTH,
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if params.is_training:
      # Serialized records, as Model Garden shuffles them: a third of the parsed size.
      dataset = dataset.shuffle(shuffle_buffer(params, input_context),
                                seed=params.masking_seed + pipeline_id)
    dataset = dataset.map(lambda record: tf.io.parse_single_example(record, features),
                          num_parallel_calls=tf.data.AUTOTUNE)
    # The stream index, made unique per input pipeline, seeds each example's mask.
    seed = params.masking_seed * 1_000_003 + pipeline_id
    dataset = dataset.enumerate().map(
        lambda index, example: masking.mask_example(example, index, self._masking_spec, seed),
        num_parallel_calls=tf.data.AUTOTUNE)
    batch_size = (input_context.get_per_replica_batch_size(params.global_batch_size)
                  if input_context else params.global_batch_size)
    dataset = dataset.batch(batch_size, drop_remainder=params.drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
