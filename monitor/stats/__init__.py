"""Pure statistics over count vectors and arrays: drift, thresholds, calibration, accuracy,
ranking (ROC-AUC, PR-AUC).

numpy and scipy only; no I/O, no global state; random generators are passed in.
Definitions, ranges and units: docs/statistics.md.
"""

from monitor.stats.accuracy_estimate import IsotonicMap, estimated_accuracy_from_bins, fit_isotonic
from monitor.stats.agreement import (
    AgreementDrop,
    AgreementMemo,
    UsualSplit,
    agreement_drop_pvalues,
    agreement_drop_test,
    choosing_half,
    disagreement_weights,
    is_usual,
    split_usual,
    stratified_drop_pvalue,
    usual_pairs,
    weighted_drop_pvalue,
)
from monitor.stats.binning import bin_counts, bin_index, categorical_counts, quantile_edges
from monitor.stats.calibration import calibration_bin_index, ece_from_bins, mce_from_bins
from monitor.stats.classification import top_confused_pairs
from monitor.stats.divergence import kl_divergence, psi, smoothed_proportions
from monitor.stats.label_free import (
    ShadowStrata,
    atc_estimate,
    atc_threshold,
    fit_shadow_strata,
    shadow_stratified_estimate,
    stratum_counts,
)
from monitor.stats.mmd import MmdTestResult, PcaBasis, median_heuristic_bandwidth, pca_fit
from monitor.stats.mmd_null import (
    MmdNull,
    MmdReference,
    calibrate_mmd_null,
    mean_kernel_to_reference,
    mmd2_to_reference,
    mmd_null_test,
    mmd_reference,
)
from monitor.stats.ranking import average_precision_from_bins, roc_auc_from_bins, score_bin_index
from monitor.stats.thresholds import (
    DriftThreshold,
    apply_bin_map,
    drift_threshold,
    merge_sparse_bins,
    psi_threshold,
)

__all__ = [
    "AgreementDrop",
    "AgreementMemo",
    "DriftThreshold",
    "IsotonicMap",
    "MmdNull",
    "MmdReference",
    "MmdTestResult",
    "PcaBasis",
    "ShadowStrata",
    "UsualSplit",
    "agreement_drop_pvalues",
    "agreement_drop_test",
    "apply_bin_map",
    "atc_estimate",
    "atc_threshold",
    "average_precision_from_bins",
    "bin_counts",
    "bin_index",
    "calibrate_mmd_null",
    "calibration_bin_index",
    "categorical_counts",
    "choosing_half",
    "disagreement_weights",
    "drift_threshold",
    "ece_from_bins",
    "estimated_accuracy_from_bins",
    "fit_isotonic",
    "fit_shadow_strata",
    "is_usual",
    "kl_divergence",
    "mce_from_bins",
    "mean_kernel_to_reference",
    "median_heuristic_bandwidth",
    "merge_sparse_bins",
    "mmd2_to_reference",
    "mmd_null_test",
    "mmd_reference",
    "pca_fit",
    "psi",
    "psi_threshold",
    "quantile_edges",
    "roc_auc_from_bins",
    "score_bin_index",
    "shadow_stratified_estimate",
    "smoothed_proportions",
    "split_usual",
    "stratified_drop_pvalue",
    "stratum_counts",
    "top_confused_pairs",
    "usual_pairs",
    "weighted_drop_pvalue",
]
