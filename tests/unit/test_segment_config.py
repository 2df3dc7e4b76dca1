"""Segment keys in the config and the emitter: bounds, reserved names, and the wire forms
(a prediction's `segments`, an image's `segment.<key>` headers) the decoders read back."""

from __future__ import annotations

import orjson
import pytest

from collectors.emitter.records import image_headers, prediction_record
from monitor.config import ConfigError, parse_config
from monitor.events import DecodeLimits, ImageDecoder, ModelClassIndex, PredictionDecoder

NOW = 1_700_000_000.0
MODELS = {"m": ModelClassIndex.of(["ok", "scratch", "dent"])}


def _config(segments: list[dict]) -> object:
    return parse_config({"version": 1, "models": [
        {"name": "m", "classes": ["ok", "scratch", "dent"], "segments": segments}]})


def test_a_bounded_and_a_fixed_key_are_accepted_with_their_capacity():
    cfg = _config([{"key": "camera", "max_values": 50}, {"key": "site", "values": ["a", "b"]}])
    camera, site = cfg.models[0].segments  # type: ignore[attr-defined]
    assert (camera.capacity, site.capacity) == (52, 4)


@pytest.mark.parametrize(("title", "segments", "path", "words"), [
    ("a key visionmon uses as a label", [{"key": "version", "max_values": 3}],
     "models.0.segments.0.key", "already uses"),
    ("a key with an upper-case letter", [{"key": "Camera", "max_values": 3}],
     "models.0.segments.0.key", "lower case"),
    ("neither bound", [{"key": "camera"}], "models.0.segments.0", "exactly one of"),
    ("both bounds", [{"key": "camera", "max_values": 2, "values": ["a"]}],
     "models.0.segments.0", "exactly one of"),
    ("a key twice", [{"key": "camera", "max_values": 2}, {"key": "camera", "max_values": 3}],
     "models.0.segments", "repeat"),
    ("a reserved value", [{"key": "site", "values": ["_other"]}],
     "models.0.segments.0.values", "not allowed"),
    ("no values", [{"key": "site", "values": []}], "models.0.segments.0.values",
     "at least one"),
])
def test_a_bad_segment_key_names_its_path(title, segments, path, words):
    with pytest.raises(ConfigError) as err:
        _config(segments)
    assert f"{path}:" in str(err.value) and words in str(err.value), title


def test_the_emitters_segments_decode_back_from_the_prediction_and_the_image():
    rec = prediction_record("r1", "m", "v1", NOW, pred=1, segments={"camera": "c12"})
    got = PredictionDecoder(MODELS, DecodeLimits()).decode(orjson.dumps(rec), NOW)
    assert got.events[0].segments == {"camera": "c12"}
    headers = image_headers("r1", "m", "v1", NOW, "image/png", {"camera": "c12", "site": "a"})
    img = ImageDecoder(MODELS, 1000, DecodeLimits()).decode(b"\x89PNG", headers, NOW)
    assert img.events[0].segments == {"camera": "c12", "site": "a"}


@pytest.mark.parametrize("segments", [{"camera": 3}, {"": "x"}, {"camera": "v" * 129},
                                      {f"k{i}": "x" for i in range(17)}])
def test_the_emitter_refuses_segments_the_daemon_would_refuse(segments):
    with pytest.raises(ValueError, match="segment"):
        prediction_record("r1", "m", "v1", NOW, pred=1, segments=segments)


def test_check_config_prints_the_state_bound_of_each_segment_key(capsys):
    from visionmon.cli import main

    code = main(["check-config", "examples/visionmon.yaml"])
    out = capsys.readouterr().out
    assert code == 0
    assert "segment digits.camera: up to 52 values" in out
    assert "segment digits.site: up to 5 values" in out
    assert "MiB (8 versions)" in out
