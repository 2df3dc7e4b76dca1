"""`visionmon check-config` refuses, before anything runs, every config that `run`,
`alerts generate` or `dashboards generate` would refuse; each error names the file, the
key path and what would be valid. Paths resolve from the config file's folder."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import load_config
from visionmon import cli
from visionmon.preflight import preflight

CLASSES = ["zero", "one", "two"]
BASE: dict[str, Any] = {
    "version": 1,
    "models": [{"name": "digits", "classes": CLASSES}],
    "baseline": {"mode": "first_events"},
}
ARTIFACT = b"not really a model, but a file with a hash"
ARTIFACT_SHA = hashlib.sha256(ARTIFACT).hexdigest()


def _artifact(folder: Path) -> str:
    (folder / "model.pt").write_bytes(ARTIFACT)
    return "model.pt"


def _reference(**card: Any) -> dict[str, Any]:
    return {"model": "digits", "path": "model.pt", "sha256": ARTIFACT_SHA, **card}


def _objective(**kw: Any) -> dict[str, Any]:
    return {"slos": {"objectives": [{"name": "q", "model": "digits", "kind": "quality_windows",
                                     "target": 0.95, **kw}]}}


Patch = Callable[[dict[str, Any], Path], None]


def _set(**sections: Any) -> Patch:
    def patch(cfg: dict[str, Any], folder: Path) -> None:
        cfg.update(copy.deepcopy(sections))
    return patch


def _with_files(*names: str, **sections: Any) -> Patch:
    def patch(cfg: dict[str, Any], folder: Path) -> None:
        _artifact(folder)
        for name in names:
            (folder / name).write_text("zero\none\ntwo\n")
        cfg.update(copy.deepcopy(sections))
    return patch


#: (sentence, change to the base config, command that refuses it, fragments of the error
#: besides the file: the key path and the valid choices)
MISTAKES: list[tuple[str, Patch, str, list[str]]] = [
    ("a threshold window outside windows.sizes lists the configured sizes",
     _set(slos={"thresholds": {"ece": {"window": "2h"}}}), "alerts",
     ["slos.thresholds.ece.window", "'2h'", "['5m', '1h', '1d']"]),
    ("a quality objective whose every tier is shorter than two evaluation slices",
     _set(quality={"eval_slice": "4h"}, **_objective(quality_objective="accuracy")), "alerts",
     ["slos.objectives.0", "quality.eval_slice", "lengthen the short windows"]),
    ("a missing reference model file names the path it looked for",
     _set(reference=_reference()), "run",
     ["reference.path", "model.pt does not exist", "resolved from the config file's folder"]),
    ("a reference model file with another SHA-256 prints the file's hash",
     _with_files(reference=_reference(sha256="0" * 64)), "run",
     ["reference.path", ARTIFACT_SHA, "reference.sha256 expects " + "0" * 64]),
    ("an uppercase sha256 asks for lowercase hex",
     _with_files(reference=_reference(sha256=ARTIFACT_SHA.upper())), "load",
     ["reference.sha256", "use lowercase hex"]),
    ("a sha256 of the wrong length says how long one is",
     _with_files(reference=_reference(sha256=ARTIFACT_SHA[:40])), "load",
     ["reference.sha256", "64 hex digits", "got 40"]),
    ("reference classes lacking a production class name it and list the reference's",
     _with_files(reference=_reference(classes=["zero", "one", "2"])), "load",
     ["reference.classes", "lacks production classes two", "lists: zero, one, 2"]),
    ("an unknown high-risk class lists the model's classes",
     _set(models=[{"name": "digits", "classes": CLASSES, "high_risk_classes": ["seven"]}]),
     "load", ["models.0", "['seven']", "valid classes: zero, one, two"]),
    ("an unknown high-risk class of a class file lists the file's classes",
     _with_files("classes.txt", models=[{"name": "digits", "classes_file": "classes.txt",
                                         "high_risk_classes": ["seven"]}]),
     "load", ["models.0.high_risk_classes", "['seven']", "valid classes: zero, one, two"]),
    ("a shadow-agreement objective on a model without a reference model",
     _set(**_objective(quality_objective="shadow_agreement")), "alerts",
     ["slos.objectives.0.quality_objective", "needs a reference model for model 'digits'",
      "accuracy, ece or drift"]),
    ("a drift objective without a baseline",
     _set(baseline={"mode": "none"}, **_objective(quality_objective="drift")), "alerts",
     ["slos.objectives.0.quality_objective", "baseline.mode is none",
      "file or first_events"]),
    ("a missing baseline file names baseline.path",
     _set(baseline={"mode": "file", "path": "baselines/{model}.json"}), "run",
     ["baseline.path", "digits.json: baseline file not found", "visionmon baseline build"]),
    ("a missing TLS certificate names http.tls_certfile",
     _set(http={"tls_certfile": "tls/cert.pem", "tls_keyfile": "tls/key.pem"}), "run",
     ["http.tls_certfile", "tls/cert.pem", "http.tls_keyfile"]),
    ("a missing Kafka CA file under SSL names kafka.ssl_cafile",
     _set(kafka={"security_protocol": "SSL", "ssl_cafile": "ca.pem"}), "run",
     ["kafka.ssl_cafile", "ca.pem"]),
]


def _write(tmp_path: Path, patch: Patch) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir()
    cfg = copy.deepcopy(BASE)
    patch(cfg, folder)
    path = folder / "visionmon.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["check-config", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("sentence", "patch", "command", "fragments"), MISTAKES,
                         ids=[m[0] for m in MISTAKES])
def test_check_config_refuses_the_mistake_naming_file_key_and_choices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        sentence: str, patch: Patch, command: str, fragments: list[str]) -> None:
    path = _write(tmp_path, patch)
    monkeypatch.chdir(tmp_path)      # relative paths must not resolve from here
    code, _, err = _check_config(path, capsys)
    assert code == 2, f"{sentence}: accepted:\n{err}"
    assert f"{path}: " in err, err
    for fragment in fragments:
        assert fragment in err, f"{sentence}: {fragment!r} not in:\n{err}"
    if command != "load":            # the command's own checks find it too
        found = preflight(load_config(path), (command,))  # type: ignore[arg-type]
        assert found.errors, f"{sentence}: `{command}` would not refuse it"


def test_every_mistake_is_reported_at_once(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _set(reference=_reference(), slos={
        "thresholds": {"drift": {"window": "2h"}}}, http={"tls_certfile": "c.pem"}))
    code, _, err = _check_config(path, capsys)
    assert code == 2
    assert all(k in err for k in ("reference.path", "slos.thresholds.drift.window",
                                  "http.tls_certfile")), err
    assert "3 problem(s)" in err


def test_a_config_without_a_baseline_passes_with_a_warning_that_drift_is_off(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _set(baseline={"mode": "none"}))
    code, out, err = _check_config(path, capsys)
    assert code == 0, err
    assert "OK" in out and "1 warning(s)" in out
    assert f"warning: {path}: baseline.mode: none: drift detection is off" in err
    assert "first_events" in err


def test_a_reference_model_that_is_not_required_only_warns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _set(reference=_reference(required=False)))
    code, _, err = _check_config(path, capsys)
    assert code == 0, err
    assert "warning:" in err and "without shadow scoring" in err


def test_a_good_config_with_a_reference_model_passes_without_warnings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _with_files(reference=_reference()))
    code, out, err = _check_config(path, capsys)
    assert code == 0, err
    assert "warning" not in err and "OK" in out


@pytest.mark.parametrize(("setting", "has_bf16", "warned"), [
    (True, False, True), (True, True, False), ("auto", False, False), (False, False, False)])
def test_cpu_bf16_forced_on_a_cpu_without_bf16_is_a_warning_naming_the_choices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        setting: object, has_bf16: bool, warned: bool) -> None:
    from reference_model import cpu_features

    monkeypatch.setattr(cpu_features, "cpu_has_bf16", lambda: has_bf16)
    path = _write(tmp_path, _with_files(reference=_reference(cpu_bf16=setting)))
    code, _, err = _check_config(path, capsys)
    assert code == 0, err
    assert (f"warning: {path}: reference.cpu_bf16: true, but this CPU has no bf16" in err) \
        == warned, err
    if warned:
        assert "amx_bf16 or avx512_bf16" in err and "cpu_bf16: auto" in err


def test_every_path_resolves_from_the_config_files_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = str(tmp_path / "elsewhere" / "ca.pem")
    path = _write(tmp_path, _with_files(
        "classes.txt", reference=_reference(),
        models=[{"name": "digits", "classes_file": "classes.txt"}],
        baseline={"mode": "file", "path": "baselines/{model}.json"},
        http={"tls_certfile": "tls/cert.pem", "tls_keyfile": "tls/key.pem"},
        kafka={"ssl_cafile": absolute, "ssl_certfile": "kafka/cert.pem"},
        state={"checkpoint_dir": "state"}))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path.relative_to(tmp_path)).config
    folder = Path("conf")
    assert cfg.reference is not None
    assert Path(cfg.reference.path) == folder / "model.pt"
    assert Path(cfg.models[0].classes_file or "") == folder / "classes.txt"
    assert Path(cfg.baseline.path or "") == folder / "baselines" / "{model}.json"
    assert Path(cfg.http.tls_certfile or "") == folder / "tls" / "cert.pem"
    assert Path(cfg.http.tls_keyfile or "") == folder / "tls" / "key.pem"
    assert Path(cfg.kafka.ssl_certfile or "") == folder / "kafka" / "cert.pem"
    assert cfg.kafka.ssl_cafile == absolute                 # absolute paths are kept
    assert Path(cfg.state.checkpoint_dir or "") == folder / "state"


def test_run_refuses_a_config_check_config_refuses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _set(reference=_reference()))
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: reference.path: " in err and "does not exist" in err


def test_alerts_generate_refuses_an_objective_without_its_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _set(**_objective(quality_objective="shadow_agreement")))
    out = tmp_path / "out"
    assert cli.main(["alerts", "generate", "--config", str(path), "--out", str(out)]) == 2
    assert "slos.objectives.0.quality_objective" in capsys.readouterr().err
    assert not out.exists()


def _two_models_one_file(tmp_path: Path, exists: bool) -> Path:
    from monitor.baseline import build_baseline, save
    from monitor.events import PredictionEvent

    evs = [PredictionEvent(f"r{i}", 100.0 + i, "digits", "v1", True, i % 3, 0.9, 0.5, 0.3,
                           0.01) for i in range(60)]
    models = [{"name": "digits", "classes": CLASSES}, {"name": "cats", "classes": ["a", "b"]}]

    def patch(cfg: dict[str, Any], folder: Path) -> None:
        if exists:
            save(build_baseline("digits", CLASSES, evs), folder / "digits.json")
        cfg.update(models=models, baseline={"mode": "file", "path": "digits.json"})
    return _write(tmp_path, patch)


def test_one_baseline_file_for_two_models_serves_its_own_and_warns_for_the_other(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check_config(_two_models_one_file(tmp_path, exists=True), capsys)
    assert code == 0, err
    assert "1 warning(s)" in out
    assert "baseline.path" in err and "model cats has no baseline" in err


def test_a_missing_baseline_file_for_two_models_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _check_config(_two_models_one_file(tmp_path, exists=False), capsys)
    assert code == 2  # was silently skipped: drift off for every model, no warning
    assert "baseline.path" in err and "digits.json: baseline file not found" in err


def test_what_the_alert_generator_adjusts_is_a_counted_warning_with_its_key(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The example's quality objective loses its 14.4x tier (5m slices); check-config says
    so as a warning that names the file and the objective, and counts it."""
    example = Path(__file__).resolve().parents[2] / "examples" / "visionmon.yaml"
    code, out, err = _check_config(example, capsys)
    assert code == 0, err
    assert "1 warning(s)" in out
    assert (f"warning: {example}: slos.objectives.3: (quality, model digits) dropping the "
            "14.4x tier") in err
