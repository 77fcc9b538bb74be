"""A small mixed-type table and the pipelines the tabular tests convert and serve.

Numbers (one with gaps the pipeline imputes), two string categories and a free-text column;
the label depends on all of them, so a wrong encoding shows up as a wrong prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COLOURS = ("blue", "green", "red")
SIZES = ("L", "M", "S")
NOTES = ("good service", "bad food", "nice place to eat", "slow", "friendly and quick")


def mixed_frame(n: int = 240, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    """(DataFrame, class labels, regression targets)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n).round(1),
        "income": rng.normal(5, 2, n).round(2),
        "colour": rng.choice(COLOURS, n),
        "size": rng.choice(SIZES, n),
        "note": rng.choice(NOTES, n),
    })
    frame.loc[::7, "income"] = np.nan
    score = ((frame["age"] > 40).astype(int) + (frame["colour"] == "red").astype(int)
             + frame["note"].str.contains("bad").astype(int))
    labels = np.asarray(score.clip(0, 2), dtype=np.int64)
    target = np.asarray(frame["age"] * 0.1 + (frame["size"] == "L") * 2.0
                        + frame["income"].fillna(5.0), dtype=np.float64)
    return frame, labels, target


def mixed_pipeline(final: Any, *, for_trees: bool = False) -> Any:
    """ColumnTransformer (impute+scale, one-hot, ordinal, TF-IDF) → ``final``.

    ``for_trees``: impute without scaling and leave the text out, as one would for gradient
    boosting. Scaling and TF-IDF weights computed in float32 on the device move rows that sit
    near a split threshold to the other branch, which the parity check refuses (rightly).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    numbers = SimpleImputer() if for_trees else make_pipeline(SimpleImputer(), StandardScaler())
    steps = [("num", numbers, ["age", "income"]),
             ("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
             ("size", OrdinalEncoder(), ["size"])]
    if not for_trees:
        steps.append(("note", TfidfVectorizer(), "note"))
    columns = ColumnTransformer(steps, sparse_threshold=0.0)
    return Pipeline([("pre", columns), ("model", final)])
