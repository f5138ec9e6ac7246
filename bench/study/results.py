"""The study's results page, in four steps (run_study.py measures first, with measure.py):

    load.py     study_run.json -> Study: each model's values per seed
    analyse.py  Study -> Analysis: paired verdicts, FLOP and time ratios, full-depth gaps
    plot.py     Study -> plots/curves.png
    page.py     Study, Analysis -> README.md
"""

import pathlib

from bench.study import analyse, load, page, plot


def write_page(record: dict, output: pathlib.Path) -> None:
  """The results page (README.md and its plot) from a study's record (study_run.json)."""
  study = load.Study.from_record(record)
  analysis = analyse.analyse(study)
  (output / page.CURVES_PNG).parent.mkdir(parents=True, exist_ok=True)
  plot.plot_curves(study, output / page.CURVES_PNG)
  (output / "README.md").write_text(page.render(study, analysis))
