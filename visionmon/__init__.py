"""visionmon: monitoring sidecar for image classifiers (composition root and CLI)."""

__version__ = "0.1.0"
