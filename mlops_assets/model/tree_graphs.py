"""scikit-learn's histogram gradient boosting as ONNX, in the precision the graph is fed.

skl2onnx's own converter writes the trees as ``TreeEnsembleRegressor``/``Classifier`` (ai.onnx.ml
3), whose outputs onnxruntime computes in float32 only: a float64 graph of them does not load, and
a float32 one sends a row that sits on a threshold (after a scaler, say) the other way. ai.onnx.ml
5's ``TreeEnsemble`` takes its thresholds and leaf values as tensors of the input's type, which
onnxruntime runs in float64 too; so these converters write the fitted trees as one
``TreeEnsemble``, add the baseline, and apply the loss's inverse link as scikit-learn does
(``HistGradientBoosting*._raw_predict`` then ``predict``/``predict_proba``). They replace
skl2onnx's for the two classes (``register``), inside a pipeline too. A model this cannot write
the same way (categorical splits, a loss with another link) raises, which compiling reports.

skl2onnx 1.20 refuses a graph that imports ai.onnx.ml above 3, so the node is written in a domain
of its own and ``finished`` moves it to ai.onnx.ml 5 once the graph is converted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

ML_DOMAIN = "ai.onnx.ml"
TREE_ENSEMBLE_OPSET = 5
WRITTEN_IN = "mlops_assets.trees"  # the domain the converter writes the node in, until ``finished``
BRANCH_LEQ = 0  # TreeEnsemble's nodes_modes: go to the true branch when x <= the split
BRANCH_MEMBER = 6  # ... when x is one of the node's set (membership_values)


def register() -> None:
    """Make skl2onnx convert both HistGradientBoosting classes with these converters."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import DoubleTensorType, guess_numpy_type
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    update_registered_converter(
        HistGradientBoostingRegressor,
        "SklearnHistGradientBoostingRegressor",
        calculate_linear_regressor_output_shapes,
        convert_regressor,
    )

    def classifier_shapes(operator) -> None:
        calculate_linear_classifier_output_shapes(operator)
        # The probabilities are computed in the input's precision, not always float32's.
        if guess_numpy_type(operator.inputs[0].type) == np.float64:
            operator.outputs[1].type = DoubleTensorType(operator.outputs[1].type.shape)

    update_registered_converter(
        HistGradientBoostingClassifier,
        "SklearnHistGradientBoostingClassifier",
        classifier_shapes,
        convert_classifier,
        # skl2onnx's classifier parser reads both; only nocl=False (labels, not indices) is written.
        options={"zipmap": [True, False, "columns"], "nocl": [False]},
    )


def finished(graph: Any) -> Any:
    """The converted ModelProto with the trees' node in ai.onnx.ml 5 (a graph without one as it is)."""
    moved = [node for node in graph.graph.node if node.domain == WRITTEN_IN]
    if not moved:
        return graph
    for node in moved:
        node.domain = ML_DOMAIN
    kept = [o for o in graph.opset_import if o.domain not in (WRITTEN_IN, ML_DOMAIN)]
    del graph.opset_import[:]
    graph.opset_import.extend(kept)
    graph.opset_import.add(domain=ML_DOMAIN, version=TREE_ENSEMBLE_OPSET)
    return graph


@dataclass
class Ensemble:
    """``TreeEnsemble``'s node and leaf arrays, filled tree by tree: a node's true and false
    branches each reach a node (by its index here) or a leaf (``*_leaf`` is 1)."""

    feature: list[int] = field(default_factory=list)
    split: list[float] = field(default_factory=list)
    mode: list[int] = field(default_factory=list)
    true: list[int] = field(default_factory=list)
    false: list[int] = field(default_factory=list)
    true_leaf: list[int] = field(default_factory=list)
    false_leaf: list[int] = field(default_factory=list)
    nan_goes_true: list[int] = field(default_factory=list)
    members: list[float] = field(default_factory=list)  # each BRANCH_MEMBER node's set, NaN after each
    roots: list[int] = field(default_factory=list)
    leaf_targets: list[int] = field(default_factory=list)
    leaf_weights: list[float] = field(default_factory=list)

    def add_leaf_tree(self, target: int, weight: float) -> None:
        """A tree that is one leaf: a node whose both branches reach it."""
        leaf = len(self.leaf_weights)
        self.leaf_targets.append(target)
        self.leaf_weights.append(weight)
        self.roots.append(len(self.feature))
        for column, value in (
            (self.feature, 0), (self.split, 0.0), (self.mode, BRANCH_LEQ), (self.true, leaf),
            (self.false, leaf), (self.true_leaf, 1), (self.false_leaf, 1), (self.nan_goes_true, 0),
        ):  # fmt: skip
            column.append(value)

    def attributes(self, dtype: np.dtype, n_targets: int) -> dict[str, Any]:
        from onnx import numpy_helper

        given = {
            "nodes_featureids": self.feature,
            "nodes_splits": numpy_helper.from_array(np.asarray(self.split, dtype=dtype)),
            "nodes_modes": numpy_helper.from_array(np.asarray(self.mode, dtype=np.uint8)),
            "nodes_truenodeids": [int(i) for i in self.true],
            "nodes_falsenodeids": [int(i) for i in self.false],
            "nodes_trueleafs": self.true_leaf,
            "nodes_falseleafs": self.false_leaf,
            "nodes_missing_value_tracks_true": self.nan_goes_true,
            "tree_roots": self.roots,
            "leaf_targetids": self.leaf_targets,
            "leaf_weights": numpy_helper.from_array(np.asarray(self.leaf_weights, dtype=dtype)),
            "n_targets": n_targets,
            "aggregate_function": 1,  # SUM
            "post_transform": 0,  # NONE: a baseline and the link come after
        }
        if self.members:
            given["membership_values"] = numpy_helper.from_array(np.asarray(self.members, dtype=dtype))
        return given


def ensemble_attributes(model: Any, dtype: np.dtype) -> dict[str, Any]:
    """``TreeEnsemble``'s attributes for every tree of a fitted HistGradientBoosting model: a tree
    per iteration and per target (a class's score, or the one score), summed."""
    categorical = getattr(model, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        raise NotImplementedError(
            "its trees split on categories (categorical_features): no ONNX node splits as they do"
        )
    trees = Ensemble()
    for iteration in model._predictors:
        for target, tree in enumerate(iteration):
            table = tree.nodes
            leaf = table["is_leaf"].astype(bool)
            if leaf[0]:
                trees.add_leaf_tree(target, float(table["value"][0]))
                continue
            # Where each of the tree's nodes lands in the ensemble's node or leaf arrays.
            interior_at = len(trees.feature) + np.cumsum(~leaf) - 1
            leaf_at = len(trees.leaf_weights) + np.cumsum(leaf) - 1
            trees.roots.append(int(interior_at[0]))
            inner = np.flatnonzero(~leaf)
            left, right = table["left"][inner], table["right"][inner]
            trees.feature += table["feature_idx"][inner].tolist()
            trees.split += table["num_threshold"][inner].tolist()
            trees.mode += [BRANCH_LEQ] * len(inner)
            trees.true += np.where(leaf[left], leaf_at[left], interior_at[left]).tolist()
            trees.false += np.where(leaf[right], leaf_at[right], interior_at[right]).tolist()
            trees.true_leaf += leaf[left].astype(int).tolist()
            trees.false_leaf += leaf[right].astype(int).tolist()
            trees.nan_goes_true += table["missing_go_to_left"][inner].astype(int).tolist()
            trees.leaf_targets += [target] * int(leaf.sum())
            trees.leaf_weights += table["value"][leaf].tolist()
    return trees.attributes(dtype, int(model.n_trees_per_iteration_))


def _raw_scores(scope, operator, container) -> tuple[str, np.dtype]:
    """The model's raw scores (``_raw_predict``: the trees' sum plus the baseline) and their type."""
    from skl2onnx.common.data_types import guess_numpy_type

    model = operator.raw_operator
    given = np.dtype(guess_numpy_type(operator.inputs[0].type))
    dtype = np.dtype(np.float64 if given == np.float64 else np.float32)
    features = operator.inputs[0].full_name
    if given != dtype:
        cast = scope.get_unique_variable_name("features_cast")
        container.add_node(
            "Cast", features, cast, to=number_type(dtype), name=scope.get_unique_operator_name("Cast")
        )
        features = cast
    summed = scope.get_unique_variable_name("tree_sum")
    container.add_node(
        "TreeEnsemble",
        features,
        summed,
        op_domain=WRITTEN_IN,
        op_version=1,
        name=scope.get_unique_operator_name("TreeEnsemble"),
        **ensemble_attributes(model, dtype),
    )
    baseline = scope.get_unique_variable_name("baseline")
    values = np.asarray(model._baseline_prediction, dtype=dtype).reshape(1, -1)
    container.add_initializer(baseline, number_type(dtype), list(values.shape), values.ravel().tolist())
    raw = scope.get_unique_variable_name("raw_scores")
    container.add_node("Add", [summed, baseline], raw, name=scope.get_unique_operator_name("Add"))
    return raw, dtype


def convert_regressor(scope, operator, container) -> None:
    raw, _ = _raw_scores(scope, operator, container)
    link = type(operator.raw_operator._loss.link).__name__
    op_type = {"IdentityLink": "Identity", "LogLink": "Exp"}.get(link)
    if op_type is None:
        raise NotImplementedError(f"its loss's link ({link}) has no ONNX operator here")
    container.add_node(
        op_type, raw, operator.outputs[0].full_name, name=scope.get_unique_operator_name(op_type)
    )


def convert_classifier(scope, operator, container) -> None:
    model = operator.raw_operator
    raw, dtype = _raw_scores(scope, operator, container)
    probabilities = operator.outputs[1].full_name
    if model.n_trees_per_iteration_ == 1:  # binary: the score is the second class's logit
        second = scope.get_unique_variable_name("second_class")
        container.add_node("Sigmoid", raw, second, name=scope.get_unique_operator_name("Sigmoid"))
        one = scope.get_unique_variable_name("one")
        container.add_initializer(one, number_type(dtype), [1, 1], [1.0])
        first = scope.get_unique_variable_name("first_class")
        container.add_node("Sub", [one, second], first, name=scope.get_unique_operator_name("Sub"))
        container.add_node(
            "Concat", [first, second], probabilities, axis=1, name=scope.get_unique_operator_name("Concat")
        )
    else:
        container.add_node(
            "Softmax", raw, probabilities, axis=1, name=scope.get_unique_operator_name("Softmax")
        )
    # predict: the class with the highest probability, the first on a tie (numpy's argmax too).
    index = scope.get_unique_variable_name("class_index")
    container.add_node(
        "ArgMax", probabilities, index, axis=1, keepdims=0, name=scope.get_unique_operator_name("ArgMax")
    )
    classes = scope.get_unique_variable_name("classes")
    label_type, labels = class_labels(model.classes_)
    container.add_initializer(classes, label_type, [len(labels)], labels)
    container.add_node(
        "Gather",
        [classes, index],
        operator.outputs[0].full_name,
        axis=0,
        name=scope.get_unique_operator_name("Gather"),
    )


def number_type(dtype: np.dtype) -> int:
    """The ONNX element type of a graph computing in ``dtype`` (float64 or float32)."""
    from onnx import TensorProto

    return TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT


def class_labels(classes: Any) -> tuple[int, list]:
    """A classifier's ``classes_`` as an ONNX tensor's element type and values, for the label
    output's Gather: whole numbers (booleans as 0/1, and floats that are whole: a boolean target
    fitted as 0.0/1.0) or text; anything else is not written."""
    from onnx import TensorProto

    labels = np.asarray(classes)
    if labels.dtype.kind in "biu" or (labels.dtype.kind == "f" and (labels == np.round(labels)).all()):
        return TensorProto.INT64, [int(c) for c in labels]
    if all(isinstance(c, str) for c in labels.tolist()):
        return TensorProto.STRING, [c.encode() for c in labels]
    raise NotImplementedError(f"its classes are {labels.dtype}: only whole numbers and text are written")
