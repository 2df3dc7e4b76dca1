"""Detection-quality benchmark: how fast visionmon's signals catch real problems on real
images, how often they alarm for nothing, and how the peer tools do on the same streams.

Modules, in the order `run.py` uses them:

  workload       (.venv, torch) data, the production and reference models, corrupted image
                 pools scored once by the reference model's intake and model
  scenarios      (numpy + json only) scenario definitions and the event streams in the event
                 contract (predictions, sampled images, feedback as JSON), generated from a
                 seed so that every tool reads the same bytes
  visionmon_run  (.venv) feeds a stream through `visionmon.app.build_statistics`, the engine
                 the daemon runs, and reads its snapshot at every checkpoint
  peers          (.bench-venv-detection) Evidently, Alibi Detect and NannyML on the same
                 streams and the same embeddings
  tables         goals, markdown tables and the delay plot -> docs/detection.md
  report_text    the prose of docs/detection.md around the tables
"""
