"""TokenizeDocuments: casing, dropped documents, and the chunk layout it hands on."""

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from components.common.corpus import DocumentChunk
from components.common.counts import SumCounts
from components.common.tokenizer import make_tokenizer
from components.tokenize_pack import stats
from components.tokenize_pack.tokenize import TokenizeDocuments, document_hash
from tests.components.tokenize_pack.conftest import IN_MEMORY, VOCAB, counts
from trainer import contract, vocab


def test_lower_case_is_configurable():
  tokens = vocab.load_vocab(VOCAB)
  unk = contract.SpecialTokenIds.from_vocab(tokens).unk
  lower = make_tokenizer(tokens, lower_case=True).tokenize(["Héllo WORLD"]).to_list()[0]
  cased = make_tokenizer(tokens, lower_case=False).tokenize(["Héllo WORLD"]).to_list()[0]
  assert [tokens[i] for i in lower] == ["hello", "world"]
  assert unk in cased and cased != lower  # the uncased vocab has no "WORLD"


def test_documents_without_tokens_are_dropped_and_counted():
  chunk = DocumentChunk("000000-000000", [
      ("A first sentence.", "\x07\x07", "A second one."), ("\x07 \x08",), ("Last.",)])
  tokens = vocab.load_vocab(VOCAB)
  tokenizer = make_tokenizer(tokens, lower_case=True)
  first = tokenizer.tokenize(["A first sentence.", "A second one."]).to_list()
  last = tokenizer.tokenize(["Last."]).to_list()[0]

  def layout(tokenized):
    return ([tokenized.document_sentences(d)[s].tolist() for d in range(2) for s in
             range(len(tokenized.document_sentences(d)))],
            tokenized.doc_hashes.tolist(), tokenized.select(np.array([1])).token_ids.tolist())

  with beam.Pipeline(options=PipelineOptions(IN_MEMORY)) as p:
    tokenized, tokenize_stats = p | beam.Create([chunk]) | TokenizeDocuments(VOCAB, True)
    assert_that(tokenized | beam.Map(layout), equal_to([(
        [*first, last],
        [document_hash(chunk.documents[0]), document_hash(chunk.documents[2])],
        last)]), label="CheckLayout")
    expected = counts(documents_kept=2, documents_dropped_no_tokens=1,
                      tokens=sum(map(len, first)) + len(last))
    summed = tokenize_stats | beam.CombineGlobally(SumCounts(stats.COUNTERS))
    assert_that(summed, equal_to([expected]), label="CheckCounts")
