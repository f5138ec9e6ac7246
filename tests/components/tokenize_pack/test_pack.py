"""Packing on hand-made token streams: exact rows, exact counts."""

import numpy as np

from components.tokenize_pack import pack
from tests.components.tokenize_pack.conftest import VOCAB
from trainer import vocab

SPECIAL = vocab.special_token_ids(VOCAB)
CLS, SEP, PAD = SPECIAL.cls, SPECIAL.sep, SPECIAL.pad
DOCUMENTS = [np.arange(1000, 1005, dtype=np.int32), np.arange(2000, 2003, dtype=np.int32),
             np.arange(3000, 3010, dtype=np.int32)]


def test_full_sentences_joins_documents_with_sep_and_pads_only_the_tail():
  word_ids, input_mask = pack.pack_full_sentences(DOCUMENTS, seq_length=8, special=SPECIAL)
  # 5 + 1 + 3 + 1 + 10 = 20 stream tokens, 6 per example: 4 examples.
  assert word_ids.tolist() == [
      [CLS, 1000, 1001, 1002, 1003, 1004, SEP, SEP],
      [CLS, 2000, 2001, 2002, SEP, 3000, 3001, SEP],
      [CLS, 3002, 3003, 3004, 3005, 3006, 3007, SEP],
      [CLS, 3008, 3009, SEP, PAD, PAD, PAD, PAD],
  ]
  assert input_mask.tolist() == [[1] * 8] * 3 + [[1, 1, 1, 1, 0, 0, 0, 0]]


def test_document_packing_never_crosses_a_document():
  word_ids, input_mask = pack.pack_documents(DOCUMENTS, seq_length=8, special=SPECIAL)
  assert word_ids.tolist() == [
      [CLS, 1000, 1001, 1002, 1003, 1004, SEP, PAD],
      [CLS, 2000, 2001, 2002, SEP, PAD, PAD, PAD],
      [CLS, 3000, 3001, 3002, 3003, 3004, 3005, SEP],
      [CLS, 3006, 3007, 3008, 3009, SEP, PAD, PAD],
  ]
  assert input_mask.sum(axis=1).tolist() == [7, 5, 8, 6]


def test_an_exact_multiple_of_the_body_needs_no_padding():
  word_ids, input_mask = pack.pack_full_sentences([np.arange(12, dtype=np.int32) + 5000], 8,
                                                  SPECIAL)
  assert word_ids.shape == (2, 8) and input_mask.all()


def _sentence_documents(num_documents: int, sentences: int, length: int):
  return [[np.arange(length, dtype=np.int32) + 10_000 + 100 * d + length * s
           for s in range(sentences)] for d in range(num_documents)]


def test_sentence_pairs_follow_bert_layout_and_labels():
  documents = _sentence_documents(40, 10, 3)
  hashes = np.arange(40, dtype=np.uint64) * 7919
  word_ids, input_mask, type_ids, labels, unpaired = pack.make_sentence_pairs(
      documents, hashes, seq_length=64, seed=3, short_seq_prob=0.0, special=SPECIAL)
  assert unpaired == 0
  assert set(labels[:, 0].tolist()) == {0, 1}
  streams = [np.concatenate(d).tolist() for d in documents]
  for ids, mask, types, (label,) in zip(word_ids, input_mask, type_ids, labels, strict=True):
    real = ids[mask == 1].tolist()
    assert mask.tolist() == [1] * len(real) + [0] * (64 - len(real))
    assert real[0] == CLS and real[-1] == SEP and real.count(SEP) == 2
    a_end = real.index(SEP)
    tokens_a, tokens_b = real[1:a_end], real[a_end + 1:-1]
    assert types[mask == 1].tolist() == [0] * (a_end + 1) + [1] * (len(tokens_b) + 1)
    owner = next(s for s in streams if tokens_a[0] in s)
    if label == 0:  # the actual continuation: A then B is a run of one document
      start = owner.index(tokens_a[0])
      assert owner[start:start + len(tokens_a) + len(tokens_b)] == tokens_a + tokens_b
    else:  # B comes from another document
      assert tokens_b[0] not in owner
  again = pack.make_sentence_pairs(documents, hashes, 64, 3, 0.0, SPECIAL)
  assert np.array_equal(again[0], word_ids) and np.array_equal(again[3], labels)


def test_a_lone_one_sentence_document_cannot_be_paired():
  outputs = pack.make_sentence_pairs([[np.arange(5, dtype=np.int32) + 2000]],
                                     np.array([1], np.uint64), 16, 0, 0.1, SPECIAL)
  assert outputs[0].shape == (0, 16) and outputs[4] == 1


def test_validation_draw_is_uniform_over_hashes():
  rng = np.random.default_rng(0)
  hashes = rng.integers(0, 2**63, size=20_000, dtype=np.uint64) * np.uint64(2)
  draws = pack.validation_draw(hashes)
  assert draws.min() >= 0 and draws.max() < 1
  assert abs(np.mean(draws < 0.1) - 0.1) < 0.01
