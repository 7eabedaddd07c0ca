"""Training and evaluation with scikit-learn."""

import csv
import json
import pickle
import struct
import zlib

from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

CONTRACTS = {"monthly": 0, "yearly": 1, "two-year": 2}


def load_table(path, label):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    features = [
        [float(r["tenure_months"]), float(r["monthly_charges"]), float(r["support_calls"]),
         CONTRACTS[r["contract"]]]
        for r in rows
    ]
    return features, [int(r[label]) for r in rows]


def train(context, train_set, lr: float = 0.1, depth: int = 3, epochs: int = 50,
          test_size: float = 0.25):
    label = context.get_param("label", "churned")
    features, labels = load_table(train_set.local_path(), label)
    fit_x, val_x, fit_y, val_y = train_test_split(
        features, labels, test_size=test_size, random_state=context.get_param("seed", 0))
    model = GradientBoostingClassifier(
        learning_rate=lr, max_depth=depth, n_estimators=epochs,
        random_state=context.get_param("seed", 0))
    model.fit(fit_x, fit_y)
    accuracy = accuracy_score(val_y, model.predict(val_x))
    context.logger.info(f"lr={lr} depth={depth} epochs={epochs}: accuracy {accuracy:.3f}")
    with open("model.pkl", "wb") as handle:
        pickle.dump(model, handle)
    context.log_artifact("model", local_path="model.pkl", kind="model")
    context.log_result("accuracy", round(accuracy, 4))
    return {"train_rows": len(fit_y)}


def evaluate(context, model, test_set):
    with open(model.local_path(), "rb") as handle:
        fitted = pickle.load(handle)
    features, labels = load_table(test_set.local_path(), context.get_param("label", "churned"))
    predicted = fitted.predict(features)
    metrics = {
        "test_accuracy": round(accuracy_score(labels, predicted), 4),
        "f1": round(f1_score(labels, predicted), 4),
        "auc": round(roc_auc_score(labels, fitted.predict_proba(features)[:, 1]), 4),
    }
    context.log_results(metrics)
    context.log_artifact("metrics", body=json.dumps(metrics, indent=2), kind="json")
    with open("confusion.png", "wb") as handle:
        handle.write(heatmap_png(confusion_matrix(labels, predicted).tolist()))
    context.log_artifact("confusion", local_path="confusion.png", kind="plot")


def heatmap_png(counts, cell=48):
    """The confusion matrix as a small greyscale PNG: darker is more (no plotting library)."""
    largest = max(max(row) for row in counts) or 1
    rows = []
    for row in counts:
        line = bytes(255 - int(215 * value / largest) for value in row for _ in range(cell))
        rows += [b"\0" + line] * cell
    header = struct.pack(">IIBBBBB", cell * len(counts[0]), cell * len(counts), 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"".join(rows))) + png_chunk(b"IEND", b""))


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
