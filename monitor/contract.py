"""Event contract v1 as one table: each topic's fields with their JSON shape, limits and
meaning, and the reasons a record may be refused.

The decoders (`monitor/events.py`) take their limits from the shapes named here; the JSON
Schemas (`monitor/schemas/*.json`) and the tables of `docs/events.md` are generated from
the table by `python -m monitor.contract_files` (a test keeps the committed files equal to
what it generates). Change a limit here, regenerate, and all four agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

CONTRACT_VERSION = 1
#: how far the sum of `probs` (and the top of `topk`) may stray from 1
PROBS_TOLERANCE = 1e-3


class RejectReason(StrEnum):
    """Why a record (or one element of a batch) was refused. Bounded: these are label values."""

    INVALID_JSON = "invalid_json"
    INVALID_UTF8 = "invalid_utf8"
    NOT_OBJECT = "not_object"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    BATCH_TOO_LARGE = "batch_too_large"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    INVALID_STATUS = "invalid_status"
    PROBS_LENGTH = "probs_length"
    PROBS_SUM = "probs_sum"
    TOPK_INVALID = "topk_invalid"
    UNKNOWN_CLASS = "unknown_class"
    UNKNOWN_MODEL = "unknown_model"
    MISSING_HEADER = "missing_header"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    INVALID_CHOICE = "invalid_choice"


#: when each reason is given (the rejections table of docs/events.md)
REASONS: Mapping[RejectReason, str] = {
    RejectReason.EMPTY: "no bytes, or an empty batch",
    RejectReason.TOO_LARGE: "over `limits.max_message_bytes` (images: `images.max_bytes`)",
    RejectReason.BATCH_TOO_LARGE: "more than `limits.max_batch_events` events in one message",
    RejectReason.INVALID_JSON: "not JSON (bytes that are not UTF-8 included), or nested deeper "
                               "than the parser allows",
    RejectReason.INVALID_UTF8: "a string field or header that is not valid UTF-8: a lone "
                               "UTF-16 surrogate such as `\"\\ud800\"` (escaped or not), which "
                               "no UTF-8 text, hence no checkpoint, can hold",
    RejectReason.NOT_OBJECT: "an element that is not a JSON object",
    RejectReason.MISSING_FIELD: "a required field is absent",
    RejectReason.MISSING_HEADER: "a required image header is absent or empty",
    RejectReason.WRONG_TYPE: "a field has the wrong JSON type (booleans are not numbers)",
    RejectReason.OUT_OF_RANGE: "NaN/∞, confidence or probs outside [0, 1], latency outside "
                               "its range, strings of the wrong length",
    RejectReason.INVALID_TIMESTAMP: "not a number or RFC 3339 with offset, negative, "
                                    "non-finite",
    RejectReason.TIMESTAMP_IN_FUTURE: "more than `limits.max_future_skew_seconds` ahead of "
                                      "the daemon's clock",
    RejectReason.INVALID_STATUS: "`status` other than `ok` / `error`",
    RejectReason.PROBS_LENGTH: "`probs` with another length than the model's class count",
    RejectReason.PROBS_SUM: f"`probs` not summing to 1 ± {PROBS_TOLERANCE:g}",
    RejectReason.TOPK_INVALID: "`topk` not descending, repeating a class, or summing above 1",
    RejectReason.UNKNOWN_CLASS: "a class name not in the model's list, or an index out of "
                                "range",
    RejectReason.UNKNOWN_MODEL: "a model not in the config",
    RejectReason.UNSUPPORTED_CONTENT_TYPE: "an image `content-type` other than JPEG, PNG, WebP",
    RejectReason.INVALID_CHOICE: "a lifecycle event's `kind` or `reason` outside its list",
}


# --- shapes: what one JSON value may be --------------------------------------------------
@dataclass(frozen=True, slots=True)
class Text:
    """A JSON string of `min_chars`..`max_chars` characters (None: unbounded). Always valid
    Unicode: a lone UTF-16 surrogate is refused (`invalid_utf8`), as state is kept in UTF-8."""

    min_chars: int = 0
    max_chars: int | None = None
    date_time: bool = False  # an RFC 3339 timestamp with a UTC offset
    #: a regular expression the whole string must match (None: any)
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class Number:
    """A finite JSON number within `minimum` <= x <= `maximum`, x < `below` (None: no bound)."""

    minimum: float | None = None
    maximum: float | None = None
    below: float | None = None


@dataclass(frozen=True, slots=True)
class Integer:
    """A JSON integer >= `minimum` (None: no bound)."""

    minimum: int | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a few fixed strings."""

    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListOf:
    """A JSON array of at least `min_items` values of one shape."""

    item: Shape
    min_items: int = 0


@dataclass(frozen=True, slots=True)
class Pair:
    """A JSON array of exactly two values, of the two shapes in order."""

    first: Shape
    second: Shape


@dataclass(frozen=True, slots=True)
class OneOf:
    """A value of one of the shapes; the options have distinct JSON types."""

    options: tuple[Shape, ...]


@dataclass(frozen=True, slots=True)
class MapOf:
    """A JSON object of at most `max_items` entries whose keys and values have the given
    shapes (strings)."""

    key: Text
    value: Text
    max_items: int


Shape = Text | Number | Integer | Choice | ListOf | Pair | OneOf | MapOf


# --- the limits, named once: the table below and the decoders use these -----------------
#: the default of `limits.max_request_id_chars`
MAX_REQUEST_ID_CHARS = 256
REQUEST_ID = Text(1, MAX_REQUEST_ID_CHARS)
MODEL_NAME = Text(1, 256)
VERSION = Text(1, 128)
CLASS_NAME = Text(1, 256)
CLASS = OneOf((Integer(minimum=0), CLASS_NAME))
PROBABILITY = Number(minimum=0, maximum=1)
TIMESTAMP = OneOf((Number(minimum=0), Text(date_time=True)))
LATENCY_MS = Number(minimum=0, below=1e9)
STATUS = Choice(("ok", "error"))
IMAGE_CONTENT_TYPE = Choice(("image/jpeg", "image/png", "image/webp"))
FREE_TEXT = Text()
#: a segment key: a Prometheus label name (checked against the config's keys on arrival)
SEGMENT_KEY = Text(1, 64)
#: a segment value (a camera, a site): becomes a label value, so it is short
SEGMENT_VALUE = Text(1, 128)
#: most segment entries one event may carry
MAX_SEGMENTS = 16
SEGMENTS = MapOf(SEGMENT_KEY, SEGMENT_VALUE, MAX_SEGMENTS)
#: the prefix of an image header that carries a segment: `segment.camera: c12`
SEGMENT_HEADER_PREFIX = "segment."


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One field of a topic: its shape, whether it is required, what it means, and (for
    the docs) when it is required if that depends on other fields and the config key that
    overrides its limit."""

    name: str
    shape: Shape
    required: bool
    meaning: str
    default: str | None = None
    required_when: str | None = None
    config_key: str | None = None
    #: a family of fields named by a pattern (a JSON Schema `patternProperties` regex)
    #: rather than one name; `name` is then how the docs write it
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class RequiredIf:
    """`fields` are required when field `when` is one of `values`."""

    when: str
    values: tuple[str, ...]
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TopicContract:
    """The fields of one topic's records (for `images`: of its headers)."""

    topic: str
    schema_file: str
    title: str
    description: str
    fields: tuple[FieldRule, ...]
    #: with `status` = `ok`, at least one of these fields must be given
    ok_needs_one_of: tuple[str, ...] = ()
    #: fields required only when another field takes one of some values
    required_if: tuple[RequiredIf, ...] = ()

    def __getitem__(self, name: str) -> FieldRule:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


_REQUEST_ID_KEY = "limits.max_request_id_chars"

PREDICTIONS = TopicContract(
    "predictions", "predictions.schema.json", "visionmon predictions event (contract v1)",
    "One served request. A Kafka message holds one such object, a JSON array of them, or "
    "newline-delimited objects. Class membership, probs summing to 1 +- "
    f"{PROBS_TOLERANCE:g} and the future-timestamp bound are checked by the decoder "
    "against the config.",
    (
        FieldRule("request_id", REQUEST_ID, True,
                  "joins the prediction to its image and label", config_key=_REQUEST_ID_KEY),
        FieldRule("ts", TIMESTAMP, True,
                  "event time: epoch seconds, or RFC 3339 with an offset; windows are in "
                  "event time"),
        FieldRule("model", MODEL_NAME, True, "must be a model of the config"),
        FieldRule("version", VERSION, True,
                  "free (bounded by `limits.max_versions_per_model`)"),
        FieldRule("pred", CLASS, False, "the predicted class: its index or its name",
                  required_when="when `status` is `ok` and neither `probs` nor `topk` is "
                                "given"),
        FieldRule("confidence", PROBABILITY, False,
                  "top-1 probability; derived from `probs` or `topk` when absent"),
        FieldRule("probs", ListOf(PROBABILITY, min_items=2), False,
                  "full distribution: one value per class of the model, summing to 1 ± "
                  f"{PROBS_TOLERANCE:g}; gives margin, entropy, top-5, Brier"),
        FieldRule("topk", ListOf(Pair(CLASS, PROBABILITY), min_items=1), False,
                  "`[class, prob]` pairs in descending probability; give margin and top-5 "
                  "when `probs` is too large to send"),
        FieldRule("latency_ms", LATENCY_MS, False, "serving latency, exported in seconds"),
        FieldRule("status", STATUS, False, "failed requests count against availability",
                  default="ok"),
        FieldRule("deployment", FREE_TEXT, False, "free text (not a label)"),
        FieldRule("segments", SEGMENTS, False,
                  "where the request came from, as `{key: value}` strings (`{\"camera\": "
                  "\"c12\"}`); keys the model's `segments` config does not declare are "
                  "ignored, values beyond its bound fold into `_other`"),
    ),
    ok_needs_one_of=("pred", "probs", "topk"),
)

FEEDBACK = TopicContract(
    "feedback", "feedback.schema.json", "visionmon feedback event (contract v1)",
    "A ground-truth label for an earlier request, joined by request_id in either arrival "
    "order. A Kafka message holds one such object, a JSON array of them, or "
    "newline-delimited objects; a second label for the same request is counted and handled "
    "by `labels.duplicates`.",
    (
        FieldRule("request_id", REQUEST_ID, True, "the request the label is for",
                  config_key=_REQUEST_ID_KEY),
        FieldRule("label", CLASS, True, "the true class: its index or its name"),
        FieldRule("ts", TIMESTAMP, True, "when the label was given"),
        FieldRule("source", FREE_TEXT, False, "who gave the label (free text)"),
        FieldRule("model", MODEL_NAME, False,
                  "lets the label be checked on arrival; otherwise it is resolved against "
                  "the prediction's model when the two join"),
    ),
)

IMAGE_HEADERS = TopicContract(
    "images", "images.headers.schema.json", "visionmon images record headers (contract v1)",
    "The Kafka message value is the raw image (JPEG, PNG or WebP); these are its headers, "
    "as UTF-8 strings.",
    (
        FieldRule("request_id", REQUEST_ID, True, "joins the image to its prediction",
                  config_key=_REQUEST_ID_KEY),
        FieldRule("model", MODEL_NAME, True, "must be a model of the config"),
        FieldRule("version", VERSION, True,
                  "the model version, bounded as a prediction's (a longer one is refused as "
                  "the prediction it belongs to is)"),
        FieldRule("content-type", IMAGE_CONTENT_TYPE, False,
                  "the image format (any case; parameters after `;` are ignored)"),
        FieldRule("ts", Text(), False, "epoch seconds or RFC 3339 with an offset"),
        FieldRule(f"{SEGMENT_HEADER_PREFIX}<key>", SEGMENT_VALUE, False,
                  "a segment of the image (`segment.camera: c12`), one header per key; "
                  "absent, the image takes its prediction's segments when the two join (its "
                  "input features count per segment only when its prediction came first, "
                  "else under `_none`)",
                  pattern=r"^segment\.[a-zA-Z_][a-zA-Z0-9_]*$"),
    ),
)

#: what a lifecycle event reports
LIFECYCLE_KIND = Choice(("loaded", "load_failed", "rolled_out", "rolled_back"))
#: why a model failed to load (a bounded label value of visionmon_model_load_failures_total)
LOAD_FAILURE_REASON = Choice(("not_found", "corrupt", "checksum_mismatch", "out_of_memory",
                              "timeout", "incompatible", "other"))
SHA256 = Text(64, 64, pattern="^[0-9a-f]{64}$")
HOST = Text(1, 256)
LOAD_SECONDS = Number(minimum=0, below=86_400)

LIFECYCLE = TopicContract(
    "lifecycle", "lifecycle.schema.json", "visionmon lifecycle event (contract v1)",
    "What happened to a production model on one replica (loaded, failed to load) or to a "
    "version in the deployment (rolled out, rolled back). A Kafka message holds one such "
    "object, a JSON array of them, or newline-delimited objects. Read only when "
    "`kafka.topics.lifecycle` is set.",
    (
        FieldRule("kind", LIFECYCLE_KIND, True,
                  "what happened: a replica loaded the model or failed to, or the version "
                  "was rolled out or rolled back"),
        FieldRule("ts", TIMESTAMP, True, "when it happened: epoch seconds, or RFC 3339 with an "
                                         "offset"),
        FieldRule("model", MODEL_NAME, True, "must be a model of the config"),
        FieldRule("version", VERSION, True,
                  "the version loaded, rolled out or rolled back to (bounded by "
                  "`limits.max_versions_per_model`, as a prediction's)"),
        FieldRule("host", HOST, False,
                  "the replica (pod or host name); never a label: replicas are counted",
                  required_when="when `kind` is `loaded` or `load_failed`"),
        FieldRule("sha256", SHA256, False,
                  "SHA-256 of the model artifact the replica loaded, 64 lower-case hex "
                  "digits", required_when="when `kind` is `loaded`"),
        FieldRule("load_seconds", LOAD_SECONDS, False,
                  "time the replica took to load and warm up the model",
                  required_when="when `kind` is `loaded`"),
        FieldRule("reason", LOAD_FAILURE_REASON, False, "why the load failed",
                  required_when="when `kind` is `load_failed`"),
        FieldRule("from_version", VERSION, False,
                  "the version replaced (rollouts and rollbacks)"),
        FieldRule("detail", FREE_TEXT, False, "free text (not a label): an error message, a "
                                              "change ticket"),
    ),
    required_if=(RequiredIf("kind", ("loaded",), ("host", "sha256", "load_seconds")),
                 RequiredIf("kind", ("load_failed",), ("host", "reason"))),
)

TOPICS: tuple[TopicContract, ...] = (PREDICTIONS, FEEDBACK, IMAGE_HEADERS, LIFECYCLE)
