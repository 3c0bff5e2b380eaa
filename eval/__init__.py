"""cgbench.eval: metrics, validation, the predictor protocol, protocols and baselines.

Typical use::

    from cgbench.eval import evaluate, render_table
    results = evaluate("nb201-nonone/cifar10-valid:zero-shot", ["flops", "zc:synflow"])
    render_table(results)

or score arrays directly: ``compute_metrics(y_true, y_pred, ["srcc", "kendall_tau", "ndcg@10"])``.
"""

from cgbench.eval.baselines import (
    ColumnPredictor,
    RandomPredictor,
    SummaryRegressor,
    summary_features,
)
from cgbench.eval.data import ArchSet, HiddenColumnError, TableDataset, UnknownColumnError
from cgbench.eval.metrics import (
    DEFAULT_METRICS,
    MetricValue,
    best_rank_in_top_k,
    bootstrap_ci,
    compute_metrics,
    get_metric,
    kendall_tau,
    kendall_tau_paper_compatible,
    mae_pct,
    ndcg_at_k,
    precision_at_k,
    spearman,
)
from cgbench.eval.predictor import (
    BasePredictor,
    PredictionsFile,
    Predictor,
    PredictorError,
    PredictorSpec,
    load_predictor,
    predictor_spec,
)
from cgbench.eval.protocols import (
    ProtocolError,
    UnofficialSplitWarning,
    evaluate,
    prepare_task,
)
from cgbench.eval.results import RunResult, read_json, render_table, write_json
from cgbench.eval.validation import (
    ConstantLabelWarning,
    ConstantPredictionWarning,
    EvalError,
    ValidationError,
    check_scores,
)

__all__ = [
    "ArchSet",
    "BasePredictor",
    "ColumnPredictor",
    "ConstantLabelWarning",
    "ConstantPredictionWarning",
    "DEFAULT_METRICS",
    "EvalError",
    "HiddenColumnError",
    "MetricValue",
    "PredictionsFile",
    "Predictor",
    "PredictorError",
    "PredictorSpec",
    "ProtocolError",
    "RandomPredictor",
    "RunResult",
    "SummaryRegressor",
    "TableDataset",
    "UnknownColumnError",
    "UnofficialSplitWarning",
    "ValidationError",
    "best_rank_in_top_k",
    "bootstrap_ci",
    "check_scores",
    "compute_metrics",
    "evaluate",
    "get_metric",
    "kendall_tau",
    "kendall_tau_paper_compatible",
    "load_predictor",
    "mae_pct",
    "ndcg_at_k",
    "precision_at_k",
    "predictor_spec",
    "prepare_task",
    "read_json",
    "render_table",
    "spearman",
    "summary_features",
    "write_json",
]
