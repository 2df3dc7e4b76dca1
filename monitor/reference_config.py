"""The `images:` and `reference:` sections of the config (image intake limits, model card).

Units: bytes are encoded bytes, pixels are width x height of the decoded first frame,
`linger_ms` is milliseconds, `mean`/`std` are on the [0, 1] pixel scale (pixel / 255).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from monitor.config_paths import ConfigPath
from monitor.frozen_model import Frozen

ImageFormat = Literal["JPEG", "PNG", "WEBP"]


#: `reference.batch_size: auto` per device
AUTO_BATCH_SIZE = {"cuda": 64, "cpu": 4}


def _all_formats() -> list[ImageFormat]:
    return ["JPEG", "PNG", "WEBP"]


_HEX = frozenset("0123456789abcdef")


def check_sha256(value: str) -> str:
    """A SHA-256 as `sha256sum` prints it: 64 lowercase hex digits; the error says which
    part is wrong."""
    if len(value) != 64:
        raise ValueError(f"a SHA-256 is 64 hex digits, got {len(value)} characters "
                         "(copy it from `sha256sum FILE`)")
    if not set(value) <= _HEX | frozenset("ABCDEF"):
        raise ValueError("a SHA-256 is 64 hex digits (0-9, a-f); copy it from `sha256sum FILE`")
    if value != value.lower():
        raise ValueError("use lowercase hex (as `sha256sum` prints it)")
    return value


class DuplicatesConfig(Frozen):
    """The `duplicate` input feature: an image counts as a duplicate when its difference hash
    is within `max_distance` bits of one of the model's last `window` scored images."""

    window: int = Field(1000, ge=1, le=100_000)
    """Recent images of each model compared with a new one (8 bytes each)."""
    max_distance: int = Field(4, ge=0, le=32)
    """Most differing bits (of 64) for two images to count as the same picture; 0: exact."""


class GalleryConfig(Frozen):
    """The failure-image gallery served at `/gallery` (off by default; in memory only, never
    written to disk; see SECURITY.md for what it exposes)."""

    enabled: bool = False
    """Keep thumbnails of recent failures (wrong by label, or disagreeing with the reference
    model) and serve them at `/gallery`, behind the same TLS and basic auth as `/metrics`."""
    size: int = Field(200, ge=1, le=5000)
    """Most failure thumbnails shown (the newest are kept)."""
    thumbnail_px: int = Field(96, ge=16, le=256)
    """Longest side of a thumbnail, in pixels (JPEG, quality 80)."""
    waiting: int = Field(2000, ge=1, le=100_000)
    """Thumbnails of scored images kept until their prediction and label arrive (the oldest
    are dropped first); a label that comes later than this many images can no longer show its
    image as wrong."""
    url: str | None = None
    """Where people reach the gallery (e.g. `https://visionmon.example.com:9464/gallery`): the
    debug dashboard's image panels link to it. Unset: `http://localhost:<http.port>/gallery`."""


class ImagesConfig(Frozen):
    """Limits applied before any image is decoded (see docs/reference-model.md)."""

    max_bytes: int = Field(5_000_000, ge=100)
    """Largest encoded image accepted, in bytes."""
    max_pixels: int = Field(40_000_000, ge=64)
    """Largest decoded first frame accepted, in pixels (width x height); checked from the header,
    before any pixel data is decompressed."""
    max_aspect_ratio: float = Field(100.0, ge=1.0)
    """Longest side / shortest side above which an image is refused (e.g. 1 x 100000)."""
    allowed_formats: list[ImageFormat] = Field(default_factory=_all_formats, min_length=1)
    """Image formats accepted (by their header, not the file name)."""
    alpha_background: tuple[int, int, int] = (255, 255, 255)
    """RGB colour (0-255) that transparent pixels are composited over."""
    duplicates: DuplicatesConfig = Field(default_factory=DuplicatesConfig)
    """How the `duplicate` input feature finds repeated images."""
    gallery: GalleryConfig = Field(default_factory=GalleryConfig)
    """The failure-image gallery (opt-in)."""

    @field_validator("alpha_background")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= v <= 255 for v in value):
            raise ValueError("alpha_background values must be in 0..255")
        return value


#: Filters that can point-sample (antialias off).
POINT_SAMPLED = frozenset({"nearest", "bilinear", "bicubic"})


def check_preprocess(input_size: int, resize: str, resize_size: int | None,
                     interpolation: str, antialias: bool) -> None:
    """The card's preprocessing keys fit together (ValueError naming them otherwise): the
    config validates a card with it and `reference_model.preprocess.Preprocess` its own."""
    if resize_size is not None:
        if resize != "center_crop":
            raise ValueError("resize_size needs resize: center_crop")
        if resize_size < input_size:
            raise ValueError(f"resize_size {resize_size} is smaller than input_size "
                             f"{input_size}: the centre crop would not fit")
    if not antialias and interpolation not in POINT_SAMPLED:
        raise ValueError(f"antialias: false works with interpolation "
                         f"{', '.join(sorted(POINT_SAMPLED))}, not {interpolation}")


class ReferenceConfig(Frozen):
    """The reference model and its model card."""

    model: str
    """Production model (from `models:`) whose sampled images this model re-scores."""
    path: ConfigPath
    """TorchScript file (`torch.jit.save`) or torch.export program (`.pt2`)."""
    sha256: str
    """Expected SHA-256 of the file, lowercase hex; checked before loading."""
    required: bool = True
    """When false, a reference model that cannot be loaded disables shadow scoring
    (visionmon_reference_model_up 0) instead of stopping the daemon."""
    classes: list[str] | None = None
    """The reference model's class names in output order. None: same classes and order as the
    production model. Otherwise every production class must appear here (matched by name); extra
    reference classes are ignored when taking the top-1."""
    input_size: int = Field(224, ge=8, le=1024)
    """Square input side, in pixels."""
    resize: Literal["stretch", "center_crop"] = "stretch"
    """`stretch`: resize to input_size x input_size. `center_crop`: scale the shorter side to
    resize_size (input_size when unset) and cut the centre input_size square."""
    resize_size: int | None = Field(None, ge=8, le=4096)
    """With center_crop: the shorter side is scaled to this many pixels first, then the centre
    input_size square is cut (256 -> 224 is the usual crop ratio 0.875). None: input_size."""
    interpolation: Literal["nearest", "bilinear", "bicubic", "box", "hamming",
                           "lanczos"] = "bilinear"
    """Resampling filter (torchvision's names)."""
    antialias: bool = True
    """Widen the filter when shrinking (Pillow's resize); false point-samples it (nearest,
    bilinear, bicubic only), as torch's interpolate without antialias."""
    fast_decode: bool = False
    """Allow JPEG draft (DCT-scaled) decoding and Pillow's reducing_gap: faster on large JPEGs,
    but the pixels differ a little from the exact pipeline (top-1 parity in
    docs/reference-model.md)."""
    channel_order: Literal["RGB", "BGR"] = "RGB"
    """Channel order the model expects."""
    mean: list[float] = Field(default_factory=lambda: [0.485, 0.456, 0.406])
    """Per-channel mean subtracted after scaling pixels to [0, 1], in channel_order."""
    std: list[float] = Field(default_factory=lambda: [0.229, 0.224, 0.225])
    """Per-channel standard deviation divided by after subtracting mean, in channel_order."""
    embedding: Literal["second_output"] | str = "second_output"
    """`second_output`: the model returns (logits, embedding). Any other value names a submodule
    (e.g. `avgpool`) whose output is the embedding (torch.export only)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the model runs: `auto` (CUDA when available), `cpu` or `cuda`."""
    batch_size: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = "auto"
    """Most images scored in one batch (1 to 4096). `auto`: 64 on CUDA, 4 on the CPU, where
    these networks run fastest in small batches (3.4x the images/s of a batch of 32 for
    EfficientNet-Lite0 on one thread, docs/reference-model.md)."""
    queue_size: int = Field(1024, ge=1)
    """Images waiting for the model (encoded); the oldest are dropped beyond this."""
    queue_max_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    """Encoded bytes waiting for the model; the oldest are dropped beyond this."""
    decode_workers: int = Field(2, ge=1, le=64)
    """Image decoders running at once: threads, or with decode_mode processes, worker processes each
    fed by a thread."""
    decode_mode: Literal["auto", "threads", "processes"] = "auto"
    """`threads`: decode in the daemon (shares the GIL; does not scale past about two). `processes`:
    decode in `decode_workers` worker processes (scales with cores; about 50 MB each). `auto`:
    processes when the model runs on CUDA, else threads."""
    linger_ms: float = Field(5.0, ge=0.0, le=1000.0)
    """How long the inference thread waits for a batch to fill, in milliseconds."""
    cpu_threads: int = Field(1, ge=1, le=256)
    """torch CPU threads when scoring on the CPU (torch.set_num_threads is process-wide)."""
    cpu_bf16: bool | Literal["auto"] = "auto"
    """On the CPU, run the model in channels_last under bf16 autocast: 2.1x to 4.8x the
    images/s of float32 where the CPU has bf16 instructions (avx512_bf16, AMX), but the
    probabilities differ a little from float32's (1 top-1 in 400 photos changed; throughput
    and parity in docs/reference-model.md). Slow on CPUs without them. `auto`: on where the
    CPU has them (x86 flags in /proc/cpuinfo; ARM stays float32), else float32.
    `visionmon_reference_model_info{precision}` says which runs. Build a baseline's image
    profile at the precision the daemon runs."""
    thread_nice: int = Field(10, ge=0, le=19)
    """Linux nice value (0-19) for the decode and inference threads, so that on a busy CPU the
    consumer loop keeps priority over shadow scoring; 0 leaves them as they are."""
    compile: bool = False
    """Wrap the model in torch.compile (CUDA, torch.export artifacts only)."""
    cuda_graphs: bool = True
    """On CUDA, capture each padded batch size as a CUDA graph and replay it (one launch per batch;
    the captured sizes share one memory pool). Ignored when the model is compiled; falls back to
    eager when a model cannot be captured."""

    @field_validator("sha256")
    @classmethod
    def _lowercase_hex(cls, value: str) -> str:
        return check_sha256(value)

    def resolved(self, device: str, cpu_has_bf16: bool) -> ReferenceConfig:
        """This card with its `auto` settings decided for `device` (`cpu` or `cuda`) and a CPU
        that has bf16 instructions or not."""
        batch = (AUTO_BATCH_SIZE["cuda" if device.startswith("cuda") else "cpu"]
                 if self.batch_size == "auto" else self.batch_size)
        bf16 = cpu_has_bf16 if self.cpu_bf16 == "auto" else self.cpu_bf16
        return self.model_copy(update={"batch_size": batch, "cpu_bf16": bf16})

    @property
    def batch(self) -> int:
        """`batch_size` of a card `resolved` for its device."""
        if self.batch_size == "auto":
            raise RuntimeError("reference.batch_size is still 'auto': resolve the card first")
        return self.batch_size

    @field_validator("mean", "std")
    @classmethod
    def _three(cls, value: list[float]) -> list[float]:
        if len(value) != 3:
            raise ValueError("needs exactly 3 values (one per channel, in channel_order)")
        return value

    @field_validator("std")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError("std values must be > 0")
        return value

    @field_validator("classes")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("class names must be unique")
        return value

    @model_validator(mode="after")
    def _embedding_name(self) -> ReferenceConfig:
        if not self.embedding.strip():
            raise ValueError("embedding must be 'second_output' or a submodule name")
        return self

    @model_validator(mode="after")
    def _preprocess(self) -> ReferenceConfig:
        check_preprocess(self.input_size, self.resize, self.resize_size, self.interpolation,
                         self.antialias)
        return self
