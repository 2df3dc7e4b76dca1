"""Emitter library for serving code: log predictions, sampled images and ground-truth
labels to the visionmon topics (event contract v1, docs/events.md) without blocking the
request path.

    from collectors.emitter import EmitterSettings, PredictionLogger
    logger = PredictionLogger(KafkaConfig(bootstrap_servers=["kafka:9092"]),
                              EmitterSettings(image_sample_rate=0.05))
    logger.log(request_id, "digits", "v3", probs=probs, latency_s=elapsed,
               image_bytes=jpeg)
    logger.label(request_id, "seven", source="review")   # when the truth is known
    logger.model_loaded("digits", "v3", sha256=file_sha256(path), load_seconds=4.2)
    logger.close()

Importing it needs neither torch nor the daemon: only orjson, prometheus_client, the
Kafka client of the chosen backend and the config model.
"""

from collectors.emitter.logger import EmitterSettings, PredictionLogger
from collectors.emitter.metrics import EmitterStats
from collectors.emitter.records import file_sha256, load_failure_reason
from collectors.emitter.sampling import sample_fraction, sampled

__all__ = ["EmitterSettings", "EmitterStats", "PredictionLogger", "file_sha256",
           "load_failure_reason", "sample_fraction", "sampled"]
