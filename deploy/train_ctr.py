#!/usr/bin/env python3
"""Train the bundled CTR model (configs/ctr.onnx) on the Avazu click sample.

    target/pyenv/bin/python deploy/train_ctr.py deploy/data/avazu-15k.csv configs/ctr.onnx

Model: logistic regression over hashed categorical features. Each feature is
the string "name=value", hashed with xxh3-64 (seed 0) and masked to BUCKETS;
adshard (src/scoring.rs) hashes OpenRTB fields into the same names, so the
two sides agree bit for bit. The ONNX graph takes int64 bucket indices
[N, FEATURES] and returns pCTR [N, 1]:

    Reshape(idx, [1, N*F]) -> GatherElements(weights[1, BUCKETS], axis 1)
      -> Reshape([N, F]) -> Gemm(ones[F, 1], bias) -> Sigmoid

GatherElements rather than Gather: ONNX Runtime's Gather copies each index's
element with its own memcpy call (about 130 ns a row of 13 here), where
GatherElements indexes in a typed loop (about 28 ns). Row sums are a Gemm
with ones (the bias its C input): cheaper than ReduceSum, and one node for
MatMul + Add. To weigh a graph variant:
`ADSHARD_BENCH_MODEL=<file.onnx> cargo bench --bench scoring`.

Training: shuffled 80/20 split (seed 7), Adagrad SGD on log-loss with L2,
a few epochs. Prints validation AUC and log-loss next to a constant-rate
baseline. Needs numpy, onnx, xxhash (and onnxruntime to check the export).
"""
import csv
import math
import sys

import numpy as np
import onnx
import xxhash
from onnx import TensorProto, helper, numpy_helper

BUCKETS = 1 << 18
# Order matters: it is the column order of the model input.
FEATURES = [
    "site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category",
    "device_model", "device_type", "device_conn_type", "banner_pos", "hour", "campaign", "creative",
]
# Avazu's anonymised columns standing in for campaign and creative ids.
SOURCE = {"campaign": "C17", "creative": "C14"}


def bucket(name, value):
    return xxhash.xxh3_64_intdigest(f"{name}={value}".encode()) & (BUCKETS - 1)


def rows(path):
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            idx = [bucket(n, r[SOURCE.get(n, n)]) for n in FEATURES]
            yield idx, int(r["click"])


def auc(y, p):
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def logloss(y, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def main(src, dst):
    data = list(rows(src))
    X = np.array([d[0] for d in data], dtype=np.int64)
    y = np.array([d[1] for d in data], dtype=np.float64)
    perm = np.random.default_rng(7).permutation(len(y))
    X, y = X[perm], y[perm]
    cut = int(len(y) * 0.8)
    Xt, yt, Xv, yv = X[:cut], y[:cut], X[cut:], y[cut:]

    w = np.zeros(BUCKETS)
    g2 = np.full(BUCKETS, 1e-6)
    base = yt.mean()
    b = math.log(base / (1 - base))
    lr, l2 = 0.05, 1e-5
    for epoch in range(4):
        for i in np.random.default_rng(epoch).permutation(len(yt)):
            idx = Xt[i]
            p = 1 / (1 + math.exp(-(w[idx].sum() + b)))
            g = p - yt[i]
            grad = g + l2 * w[idx]
            g2[idx] += grad * grad
            w[idx] -= lr * grad / np.sqrt(g2[idx])
            b -= lr * 0.1 * g
    pv = 1 / (1 + np.exp(-(w[Xv].sum(axis=1) + b)))
    stats = {
        "train_rows": len(yt),
        "valid_rows": len(yv),
        "valid_auc": round(float(auc(yv, pv)), 4),
        "valid_logloss": round(logloss(yv, pv), 4),
        "baseline_logloss": round(logloss(yv, np.full(len(yv), base)), 4),
        "click_rate": round(float(base), 4),
    }

    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["idx", "flat"], ["flat_idx"]),
            helper.make_node("GatherElements", ["weights", "flat_idx"], ["flat_picked"], axis=1),
            helper.make_node("Reshape", ["flat_picked", "rows"], ["picked"]),
            helper.make_node("Gemm", ["picked", "ones", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["pctr"]),
        ],
        "adshard_ctr",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N", len(FEATURES)])],
        [helper.make_tensor_value_info("pctr", TensorProto.FLOAT, ["N", 1])],
        initializer=[
            numpy_helper.from_array(w.astype(np.float32).reshape(1, BUCKETS), "weights"),
            numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "flat"),
            numpy_helper.from_array(np.array([-1, len(FEATURES)], dtype=np.int64), "rows"),
            numpy_helper.from_array(np.array([b], dtype=np.float32), "bias"),
            numpy_helper.from_array(np.ones((len(FEATURES), 1), dtype=np.float32), "ones"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="adshard-train")
    model.ir_version = 8
    for k, v in {**stats, "features": ",".join(FEATURES), "buckets": str(BUCKETS), "hash": "xxh3_64(name=value) & (buckets-1)"}.items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.checker.check_model(model)
    onnx.save(model, dst)

    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
        got = sess.run(["pctr"], {"idx": Xv[:64]})[0]
        assert np.allclose(got.reshape(-1), pv[:64], atol=1e-4), "ONNX output differs from numpy"
    except ImportError:
        pass
    print(" ".join(f"{k}={v}" for k, v in stats.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "deploy/data/avazu-15k.csv", sys.argv[2] if len(sys.argv) > 2 else "configs/ctr.onnx")
