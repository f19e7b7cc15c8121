"""The straightforward script a user of the seed would write for one species: the baseline of end_to_end.py.

One process per partition, as a bash loop runs it: pandas reads the site's features and the species' gold data
and joins them on gbifID; a stratified 80/20 split; hyperopt TPE where each trial is ``cross_val_score`` of an
``LGBMClassifier(n_estimators=200, n_jobs=1)`` over stratified k folds (ROC-AUC) in the same search space as
``config/lgbm_params.yml``; then the seed's scores (ROC-AUC, accuracy, classification report, confusion-matrix
heatmap) on the test rows, a fit on all rows and ``mlflow.lightgbm.save_model``. Prints one JSON line.

    python benchmarks/_script_baseline.py FEATURES.csv GOLD.csv OUT_DIR [--max-evals 20] [--folds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

START = time.perf_counter()

import hyperopt  # noqa: E402
import lightgbm  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow.lightgbm  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split  # noqa: E402

SPACE = {
    "learning_rate": hyperopt.hp.loguniform("learning_rate", np.log(0.01), np.log(0.3)),
    "num_leaves": hyperopt.hp.quniform("num_leaves", 8, 128, 1),
    "min_child_samples": hyperopt.hp.quniform("min_child_samples", 5, 100, 1),
    "colsample_bytree": hyperopt.hp.uniform("colsample_bytree", 0.5, 1.0),
    "subsample": hyperopt.hp.uniform("subsample", 0.5, 1.0),
    "reg_alpha": hyperopt.hp.loguniform("reg_alpha", np.log(1e-4), np.log(10.0)),
    "reg_lambda": hyperopt.hp.loguniform("reg_lambda", np.log(1e-4), np.log(10.0)),
}


def model(params: dict, seed: int) -> lightgbm.LGBMClassifier:
    params = {**params, "num_leaves": int(params["num_leaves"]), "min_child_samples": int(params["min_child_samples"])}
    return lightgbm.LGBMClassifier(
        n_estimators=200, n_jobs=1, subsample_freq=1, random_state=seed, verbose=-1, **params
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features")
    parser.add_argument("gold")
    parser.add_argument("out")
    parser.add_argument("--max-evals", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    features = pd.read_csv(args.features)
    gold = pd.read_csv(args.gold)
    data = gold[["gbifID", "occurrenceStatus"]].merge(features, on="gbifID")
    y = (data["occurrenceStatus"] == "PRESENT").astype(int)
    X = data.drop(columns=["gbifID", "occurrenceStatus", "decimalLatitude", "decimalLongitude"])
    for column in X.columns:
        if X[column].dtype == object:
            X[column] = X[column].astype("category")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=args.seed)

    folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)

    def objective(params):
        scores = cross_val_score(model(params, args.seed), X_train, y_train, cv=folds, scoring="roc_auc")
        return {"loss": -scores.mean(), "status": hyperopt.STATUS_OK}

    trials = hyperopt.Trials()
    best = hyperopt.fmin(
        objective, SPACE, algo=hyperopt.tpe.suggest, max_evals=args.max_evals, trials=trials,
        rstate=np.random.default_rng(args.seed), show_progressbar=False,
    )  # fmt: skip
    best = hyperopt.space_eval(SPACE, best)

    fitted = model(best, args.seed).fit(X_train, y_train)
    probability = fitted.predict_proba(X_test)[:, 1]
    predicted = (probability >= 0.5).astype(int)
    roc_auc = roc_auc_score(y_test, probability)
    report = classification_report(y_test, predicted, output_dict=True, zero_division=0)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.imshow(confusion_matrix(y_test, predicted), cmap="Blues")
    ax.set_xlabel("predicted")
    ax.set_ylabel("observed")
    fig.savefig(f"{args.out}/confusion_matrix.png", dpi=100)
    plt.close(fig)
    with open(f"{args.out}/metrics.json", "w") as handle:
        json.dump({"roc_auc": roc_auc, "accuracy": accuracy_score(y_test, predicted), "report": report}, handle)

    final = model(best, args.seed).fit(X, y)
    mlflow.lightgbm.save_model(final, f"{args.out}/lgbm_gbif_model")
    print(json.dumps({"roc_auc": roc_auc, "rows": len(data), "seconds": time.perf_counter() - START}))


if __name__ == "__main__":
    main()
