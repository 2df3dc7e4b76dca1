"""Postmortems: `visionmon replay` recomputes every metric of a past time range and
`visionmon report` turns metrics into an HTML report.

One job per module: `timerange` (the range and its notation), `read` (records of a range
from Kafka or JSON lines), `replay` (records -> snapshots on a fresh engine), `baselines`
(which baselines the replay measures drift against), `openmetrics` (snapshots -> an
OpenMetrics file), `metrics` (a replay file or a scrape -> points per series), `sections`
and `thumbnails` (points -> report sections), `figures` (numbers -> PNG), `page`
(sections -> HTML), `report` (sections -> files), `cli` (the commands' options and wiring).
"""
