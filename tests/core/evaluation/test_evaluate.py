import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from biodiv_core.errors import DataContractError
from biodiv_core.evaluation.metrics import evaluate, flat_metrics, write_results

# Hand-made: 5 ABSENT, 4 PRESENT. Threshold 0.5 -> TN=4, FP=1 (0.6), FN=1 (0.3), TP=3.
Y = [0, 0, 0, 1, 1, 1, 1, 0, 0]
P = [0.1, 0.4, 0.6, 0.8, 0.7, 0.3, 0.9, 0.2, 0.05]


def test_metrics_on_a_hand_made_example():
    m = evaluate(Y, P)
    assert m["confusion_matrix"] == [[4, 1], [1, 3]]
    assert m["accuracy"] == pytest.approx(7 / 9)
    # 20 PRESENT x ABSENT pairs, the PRESENT one scored higher in 18 (0.3 beats only 0.1, 0.2 and 0.05)
    assert m["roc_auc"] == pytest.approx(18 / 20)
    assert m["ABSENT"] == pytest.approx({"precision": 0.8, "recall": 0.8, "f1-score": 0.8, "support": 5})
    assert m["PRESENT"] == pytest.approx({"precision": 0.75, "recall": 0.75, "f1-score": 0.75, "support": 4})
    assert m["macro avg"]["f1-score"] == pytest.approx((0.8 + 0.75) / 2)
    assert m["weighted avg"]["f1-score"] == pytest.approx((5 * 0.8 + 4 * 0.75) / 9)
    assert m["weighted avg"]["support"] == 9
    json.dumps(m)  # JSON-able as written to metrics.json


def test_threshold_moves_the_class_predictions_not_the_auc():
    strict = evaluate(Y, P, threshold=0.85)
    assert strict["confusion_matrix"] == [[5, 0], [3, 1]]
    assert strict["roc_auc"] == evaluate(Y, P)["roc_auc"]


def test_flat_metrics_have_mlflow_safe_names():
    flat = flat_metrics(evaluate(Y, P))
    assert flat["PRESENT_f1_score"] == pytest.approx(0.75)
    assert flat["macro_avg_precision"] == pytest.approx(0.775)
    assert all(" " not in k and "-" not in k for k in flat)


def test_bad_inputs():
    with pytest.raises(DataContractError, match="only one class"):
        evaluate([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(DataContractError, match="3 true labels but 2 predictions"):
        evaluate([0, 1, 1], [0.2, 0.5])


def test_write_results(tmp_path):
    metrics = evaluate(Y, P)
    paths = write_results(metrics, tmp_path / "scores")
    assert json.loads(paths["metrics"].read_text()) == metrics
    for key in ("confusion_matrix", "classification_report"):
        image = mpimg.imread(paths[key])
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert np.ptp(image[..., :3]) > 0.5  # not a blank canvas
