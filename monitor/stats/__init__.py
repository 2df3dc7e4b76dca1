"""Pure statistics over count vectors and arrays: drift, thresholds, calibration, accuracy.

numpy and scipy only; no I/O, no global state; random generators are passed in.
Definitions, ranges and units: docs/statistics.md.
"""

from monitor.stats.accuracy_estimate import (
    IsotonicMap,
    estimated_accuracy,
    estimated_accuracy_bin_error_bound,
    estimated_accuracy_from_bins,
    fit_isotonic,
)
from monitor.stats.agreement import (
    AgreementDrop,
    agreement_drop_pvalues,
    agreement_drop_test,
    disagreement_weights,
    stratified_drop_pvalue,
    weighted_drop_pvalue,
    weighted_test_applies,
)
from monitor.stats.binning import bin_counts, bin_index, categorical_counts, quantile_edges
from monitor.stats.calibration import (
    CalibrationBins,
    brier_multiclass,
    calibration_bin_index,
    calibration_bins,
    classwise_ece,
    ece,
    ece_from_bins,
    mce_from_bins,
)
from monitor.stats.classification import (
    PerClassScores,
    accuracy,
    confusion_matrix,
    per_class_scores,
    top_confused_pairs,
    topk_correct,
)
from monitor.stats.divergence import (
    js_divergence,
    kl_divergence,
    psi,
    psi_per_row,
    smoothed_proportions,
)
from monitor.stats.mmd import (
    MmdTestResult,
    PcaBasis,
    median_heuristic_bandwidth,
    mmd2_rbf,
    mmd_permutation_threshold,
    pca_fit,
    pca_project,
)
from monitor.stats.mmd_null import (
    MmdNull,
    MmdReference,
    calibrate_mmd_null,
    mean_kernel_to_reference,
    mmd2_to_reference,
    mmd_null_test,
    mmd_reference,
)
from monitor.stats.thresholds import (
    DriftThreshold,
    apply_bin_map,
    drift_threshold,
    merge_sparse_bins,
    psi_threshold,
    simulated_psi_threshold,
)

__all__ = [
    "AgreementDrop",
    "CalibrationBins",
    "DriftThreshold",
    "IsotonicMap",
    "MmdNull",
    "MmdReference",
    "MmdTestResult",
    "PcaBasis",
    "PerClassScores",
    "accuracy",
    "agreement_drop_pvalues",
    "agreement_drop_test",
    "apply_bin_map",
    "bin_counts",
    "bin_index",
    "brier_multiclass",
    "calibrate_mmd_null",
    "calibration_bin_index",
    "calibration_bins",
    "categorical_counts",
    "classwise_ece",
    "confusion_matrix",
    "disagreement_weights",
    "drift_threshold",
    "ece",
    "ece_from_bins",
    "estimated_accuracy",
    "estimated_accuracy_bin_error_bound",
    "estimated_accuracy_from_bins",
    "fit_isotonic",
    "js_divergence",
    "kl_divergence",
    "mce_from_bins",
    "mean_kernel_to_reference",
    "median_heuristic_bandwidth",
    "merge_sparse_bins",
    "mmd2_rbf",
    "mmd2_to_reference",
    "mmd_null_test",
    "mmd_permutation_threshold",
    "mmd_reference",
    "pca_fit",
    "pca_project",
    "per_class_scores",
    "psi",
    "psi_per_row",
    "psi_threshold",
    "quantile_edges",
    "simulated_psi_threshold",
    "smoothed_proportions",
    "stratified_drop_pvalue",
    "top_confused_pairs",
    "topk_correct",
    "weighted_drop_pvalue",
    "weighted_test_applies",
]
