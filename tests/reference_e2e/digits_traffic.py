"""What the reference-model end-to-end tests share: a daemon config that scores digits with
the digits reference model against a first-events baseline, and the scored-image count."""

from __future__ import annotations

from typing import Any

from reference_model.digits import DIGIT_CLASSES, DigitsArtifact
from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for


def digits_first_events_config(bootstrap: str, names: dict[str, str],
                               art: DigitsArtifact) -> dict[str, Any]:
    """One model `digits`, the artifact as reference, a baseline from the first 300
    predictions and 300 scored images, and one 1h window. The reference queue holds a whole
    burst (the tests send up to 1,200 images at once): a slow machine must not drop any."""
    return base_config(bootstrap, names, models=[{"name": "digits",
                                                  "classes": list(DIGIT_CLASSES)}],
                       reference={**art.config.model_dump(mode="json"), "queue_size": 4096},
                       baseline={"mode": "first_events", "events": 300, "images": 300},
                       windows={"sizes": ["1h"], "slices": 60})


def images_scored(url: str) -> float:
    """Images the daemon at `url` has scored so far."""
    return metric_sum(parse_metrics(scrape(url)), "visionmon_reference_images_scored_total")


def wait_for_image_profile(url: str, images: int = 300, timeout: float = 60) -> None:
    """Wait until the daemon at `url` has sealed its baseline with an image profile of
    `images` images: the images sent after it are then all measured against it."""
    def sealed_with_images() -> bool:
        m = parse_metrics(scrape(url))
        return metric_sum(m, "visionmon_baseline_info", state="sealed") >= 1 \
            and metric_sum(m, "visionmon_baseline_events", kind="images") >= images
    wait_for(sealed_with_images, timeout, what="the baseline's image profile")
