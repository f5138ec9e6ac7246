"""GLUE evaluation: fine-tune an exported BERT checkpoint, score it, and decide its blessing.

tasks.py (what each task is) -> data.py (GLUE TSVs, TFDS, or the packaged Rotten Tomatoes
sentences) -> tokenize.py ([CLS] a [SEP] b [SEP]) -> finetune.py (a plain BertEncoderV2
restored from the checkpoint, under Model Garden's BertClassifier) -> metrics.py ->
report.py (JSON, Markdown, PNG, TensorBoard) and blessing.py (ModelBlessing). evaluate.py runs
the chain; cli.py (`tokendrop evaluate-glue`) and component.py (the TFX GlueEvaluator) call it.
job.py fine-tunes one task as a job (a Vertex custom job on a TPU, or a local process);
jobs.py starts one per task and waits for them.
"""
