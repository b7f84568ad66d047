"""Certification on the host: Cohen et al.'s CERTIFY and PREDICT from vote counts, sequential
certification at chosen radii (anytime-valid), the RESULTS.tsv layout of their reference
implementation, and certified-accuracy reports.

Pure Python (numpy, scipy; matplotlib for plots): nothing here needs TVM.
"""

from tvm_intsmooth.certify.cohen import (
    ABSTAIN,
    Certificate,
    certify,
    certify_count,
    lower_confidence_bound,
    predict,
)
from tvm_intsmooth.certify.report import (
    certified_accuracy,
    default_radii,
    format_accuracy_table,
    max_certifiable_radius,
    plot_certified_accuracy,
)
from tvm_intsmooth.certify.results_tsv import (
    COLUMNS,
    REQUIRED_METADATA,
    CertifyResults,
    ResultRow,
    read_results,
    sidecar_path,
)
from tvm_intsmooth.certify.results_writer import ResultsWriter
from tvm_intsmooth.certify.sequential import (
    SequentialCertificate,
    certify_sequential,
    checkpoints,
    confidence_sequence_lower,
    confidence_sequence_upper,
    sequential_decision,
)

__all__ = [
    "ABSTAIN",
    "COLUMNS",
    "REQUIRED_METADATA",
    "Certificate",
    "CertifyResults",
    "ResultRow",
    "ResultsWriter",
    "SequentialCertificate",
    "certified_accuracy",
    "certify",
    "certify_count",
    "certify_sequential",
    "checkpoints",
    "confidence_sequence_lower",
    "confidence_sequence_upper",
    "default_radii",
    "format_accuracy_table",
    "lower_confidence_bound",
    "max_certifiable_radius",
    "plot_certified_accuracy",
    "predict",
    "read_results",
    "sequential_decision",
    "sidecar_path",
]
