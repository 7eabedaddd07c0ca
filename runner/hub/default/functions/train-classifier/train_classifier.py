"""Train and evaluate a scikit-learn classifier on CSV data sets."""

from __future__ import annotations

import csv
import json
import math
import pickle
from typing import Any

import numpy as np
from sklearn import metrics as skmetrics
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

MISSING = {"", "na", "n/a", "nan", "null", "none"}
MISSING_CATEGORY = "(missing)"
MODELS = ("random-forest", "gradient-boosting", "logistic-regression")


def train(context: Any, train_set: Any, test_set: Any = None, label: str = "label", drop: Any = (),
          model: str = "random-forest", n_estimators: int = 100, max_depth: int = 0,
          learning_rate: float = 0.1, C: float = 1.0, seed: int = 42) -> None:
    header, rows = read_csv(train_set.local_path())
    features = [name for name in header if name != label and name not in _names(drop)]
    if label not in header:
        raise ValueError(f"no label column {label!r}; the columns are {header}")
    if not features:
        raise ValueError("no feature columns are left to train on")
    numeric = [name for name in features if _is_numeric(column(header, rows, name))]
    x = features_matrix(header, rows, features, numeric)
    y = np.array(column(header, rows, label), dtype=object)
    classifier = make_classifier(model, int(n_estimators), int(max_depth), float(learning_rate),
                                 float(C), int(seed))
    pipeline = Pipeline([("prepare", preprocessing(features, numeric)), ("classify", classifier)])
    pipeline.fit(x, y)
    bundle = {"pipeline": pipeline, "label": label, "features": features, "numeric": numeric,
              "classes": [str(c) for c in pipeline.classes_], "model": model}
    with open("model.pkl", "wb") as handle:
        pickle.dump(bundle, handle)
    context.log_artifact("model", local_path="model.pkl", kind="model")
    context.log_results({"train_accuracy": round(float(pipeline.score(x, y)), 6),
                         "train_rows": len(rows), "features": len(features)})
    context.logger.info(f"trained {model} on {len(rows)} rows: {len(numeric)} numeric and "
                        f"{len(features) - len(numeric)} categorical features")
    if test_set is not None:
        _evaluate(context, bundle, test_set)


def evaluate(context: Any, model: Any, test_set: Any) -> None:
    with open(model.local_path(), "rb") as handle:
        bundle = pickle.load(handle)  # a model this project's own run made
    _evaluate(context, bundle, test_set)


def _evaluate(context: Any, bundle: dict[str, Any], test_set: Any) -> None:
    header, rows = read_csv(test_set.local_path())
    missing = [name for name in [*bundle["features"], bundle["label"]] if name not in header]
    if missing:
        raise ValueError(f"the test set lacks the columns {missing}")
    pipeline = bundle["pipeline"]
    x = features_matrix(header, rows, bundle["features"], bundle["numeric"])
    y = np.array(column(header, rows, bundle["label"]), dtype=object)
    predicted = pipeline.predict(x)
    classes = list(pipeline.classes_)
    found = {
        "accuracy": skmetrics.accuracy_score(y, predicted),
        "precision_macro": skmetrics.precision_score(y, predicted, average="macro", zero_division=0),
        "recall_macro": skmetrics.recall_score(y, predicted, average="macro", zero_division=0),
        "f1_macro": skmetrics.f1_score(y, predicted, average="macro", zero_division=0),
    }
    if len(classes) == 2 and len(set(y)) == 2:
        positive = pipeline.predict_proba(x)[:, 1]
        found["roc_auc"] = skmetrics.roc_auc_score(y == classes[1], positive)
    results = {name: round(float(value), 6) for name, value in found.items()}
    matrix = skmetrics.confusion_matrix(y, predicted, labels=classes).tolist()
    report = {**results, "classes": [str(c) for c in classes], "confusion_matrix": matrix,
              "model": bundle["model"], "test_rows": len(rows)}
    context.log_artifact("metrics", body=json.dumps(report, indent=2), format="json", kind="metrics")
    context.log_results({**results, "test_rows": len(rows)})


def make_classifier(model: str, n_estimators: int, max_depth: int, learning_rate: float, c: float,
                    seed: int) -> Any:
    if model == "random-forest":
        return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth or None,
                                      random_state=seed, n_jobs=1)
    if model == "gradient-boosting":
        return GradientBoostingClassifier(n_estimators=n_estimators, max_depth=max_depth or 3,
                                          learning_rate=learning_rate, random_state=seed)
    if model == "logistic-regression":
        return LogisticRegression(C=c, max_iter=1000)
    raise ValueError(f"model {model!r} is not one of {', '.join(MODELS)}")


def preprocessing(features: list[str], numeric: list[str]) -> ColumnTransformer:
    numeric_at = [i for i, name in enumerate(features) if name in numeric]
    other_at = [i for i, name in enumerate(features) if name not in numeric]
    to_float = FunctionTransformer(np.asarray, kw_args={"dtype": float})
    return ColumnTransformer([
        ("numeric", make_pipeline(to_float, SimpleImputer(strategy="median"), StandardScaler()), numeric_at),
        ("categorical", OneHotEncoder(handle_unknown="ignore"), other_at),
    ], sparse_threshold=0)


def read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        rows = [row for row in reader if row]
    if not header or not rows:
        raise ValueError(f"{path}: a data set needs a header row and at least one row")
    return header, rows


def column(header: list[str], rows: list[list[str]], name: str) -> list[str]:
    at = header.index(name)
    return [row[at].strip() if at < len(row) else "" for row in rows]


def features_matrix(header: list[str], rows: list[list[str]], features: list[str],
                    numeric: list[str]) -> np.ndarray:
    columns = []
    for name in features:
        values = column(header, rows, name)
        if name in numeric:
            columns.append([_number(value) for value in values])
        else:
            columns.append([MISSING_CATEGORY if value.lower() in MISSING else value for value in values])
    return np.array(list(zip(*columns, strict=True)), dtype=object).reshape(len(rows), len(features))


def _is_numeric(values: list[str]) -> bool:
    present = [value for value in values if value.lower() not in MISSING]
    return bool(present) and all(not math.isnan(_number(value)) for value in present)


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        return math.nan
    return number if math.isfinite(number) else math.nan


def _names(value: Any) -> set[str]:
    """`drop` as a list, or a comma-separated string (as `-p drop=id,name` gives it)."""
    if isinstance(value, str):
        return {name.strip() for name in value.split(",") if name.strip()}
    return {str(name) for name in value or ()}
