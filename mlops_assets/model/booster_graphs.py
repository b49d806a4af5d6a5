"""LightGBM's and XGBoost's boosted trees as one ONNX graph, read from each library's own dump.

onnxmltools converts both to ``TreeEnsembleRegressor``/``Classifier`` (ai.onnx.ml 1 and 3), whose
thresholds and sums onnxruntime keeps in float32: LightGBM compares and sums in float64, so a row
on a threshold would go the other way, and neither converter takes pandas Categorical columns.
ai.onnx.ml 5's ``TreeEnsemble`` runs in the input's precision and splits on sets of categories, so
the trees are written here from the libraries' documented dumps, split by split as each decides:

- LightGBM (``Booster.dump_model()``; ``Tree::NumericalDecision``/``CategoricalDecision``): float64,
  left when ``x <= threshold``, NaN the default way where NaN is missing and as 0 elsewhere; a
  category left when its code is in the node's set, NaN right.
- XGBoost (``save_raw("json")``; ``RegTree``'s ``Decision``): float32 (it casts the features),
  left when ``x < split``, NaN the default way; a category right when in the node's set.

Categories are coded as each library codes a pandas Categorical column: the category's position
among those it was trained on (LightGBM's ``pandas_categorical``, XGBoost's ``cats``), a missing
or unknown one as NaN. Fed ``coded``, the graph takes one matrix with the codes in place, coded by
the service from the table the manifest keeps (a third of a 1-row request's time on the graph
went to coding text in it: an input, a ``LabelEncoder`` and a ``Cast`` per category); fed
``columns``, it takes the categories as text and codes them itself. The raw score is
turned into the answer as the objective does (exp for poisson-like losses, the logistic, softmax).
What cannot be written the same way raises NotImplementedError (zero as missing, linear trees,
another objective), which compiling reports.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops_assets.model.tree_graphs import (
    BRANCH_LEQ,
    BRANCH_MEMBER,
    ML_DOMAIN,
    TREE_ENSEMBLE_OPSET,
    Ensemble,
    class_labels,
    number_type,
)

MAIN_OPSET = 18
BRANCH_LT = 1
LINKS = ("identity", "exp", "logistic", "softmax")


@dataclass
class Boosted:
    """What the graph needs from a fitted boosted model."""

    trees: Ensemble
    n_targets: int
    dtype: np.dtype  # what the library compares and sums in
    categories: list[list[str]]  # per categorical feature, in order: the categories its codes index
    link: str  # one of LINKS: raw score -> prediction or probability
    baseline: list[float] = field(default_factory=list)  # a raw score added to the trees' sum
    logistic_scale: float = 1.0
    classes: Any = None  # a classifier's classes_, in the order of its probabilities


def is_booster(model: Any) -> bool:
    return type(model).__module__.split(".")[0] in READERS


def booster_graph(
    model: Any, features: list[tuple[str, bool]], inputs: str, numbers: str
) -> tuple[Any, dict[str, list[str]]]:
    """The ModelProto answering as ``model.predict`` (and ``predict_proba``) does, and what the
    manifest must say to feed it: for ``inputs="coded"``, each categorical feature's categories
    in code order. ``features``: each feature's name and whether it is a category, in the
    model's column order."""
    boosted = READERS[type(model).__module__.split(".")[0]](model, len(features))
    if np.dtype(numbers) != boosted.dtype:
        raise NotImplementedError(f"it compares in {boosted.dtype}, not {numbers}")
    codes = {}
    if inputs != "matrix":
        names = [name for name, categorical in features if categorical]
        if len(names) != len(boosted.categories):
            raise NotImplementedError(
                "its categorical columns are not the spec's categories as pandas Categorical"
            )
        codes = dict(zip(names, boosted.categories, strict=True))
    return _graph(boosted, features, inputs, codes), (codes if inputs == "coded" else {})


def _graph(boosted: Boosted, features: list[tuple[str, bool]], inputs: str, codes: dict) -> Any:
    from onnx import helper

    number = number_type(boosted.dtype)
    nodes: list = []
    initializers: list = []
    if inputs in ("matrix", "coded"):  # coded: categories arrive as their codes, coded by the service
        graph_inputs = [helper.make_tensor_value_info("features", number, [None, len(features)])]
        matrix = "features"
    else:
        graph_inputs, columns = _coded_columns(boosted, features, codes, nodes)
        matrix = "matrix"
        nodes.append(helper.make_node("Concat", columns, [matrix], axis=1))
    attributes = boosted.trees.attributes(boosted.dtype, boosted.n_targets)
    nodes.append(helper.make_node("TreeEnsemble", [matrix], ["tree_sum"], domain=ML_DOMAIN, **attributes))
    raw = "tree_sum"
    if boosted.baseline:
        initializers.append(_tensor("baseline", boosted.dtype, [1, boosted.n_targets], boosted.baseline))
        nodes.append(helper.make_node("Add", ["tree_sum", "baseline"], ["raw_scores"]))
        raw = "raw_scores"
    if boosted.classes is None:
        link = {"identity": "Identity", "exp": "Exp"}[boosted.link]
        nodes.append(helper.make_node(link, [raw], ["variable"]))
        outputs = [helper.make_tensor_value_info("variable", number, [None, 1])]
    else:
        outputs = _classified(boosted, raw, nodes, initializers)
    graph = helper.make_graph(nodes, "boosted_trees", graph_inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", MAIN_OPSET), helper.make_opsetid(ML_DOMAIN, TREE_ENSEMBLE_OPSET)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="mlops-assets")


def _coded_columns(
    boosted: Boosted, features: list[tuple[str, bool]], codes: dict[str, list[str]], nodes: list
) -> tuple[list, list[str]]:
    """An input per feature, a category coded as the library codes it (``codes``: its categories
    in code order); the columns to concatenate."""
    from onnx import TensorProto, helper

    graph_inputs, columns = [], []
    for name, categorical in features:
        if not categorical:
            graph_inputs.append(helper.make_tensor_value_info(name, number_type(boosted.dtype), [None, 1]))
            columns.append(name)
            continue
        categories = codes[name]
        graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, [None, 1]))
        coded, column = f"{name}_code", f"{name}_column"
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [name],
                [coded],
                domain=ML_DOMAIN,
                keys_strings=categories,
                values_floats=[float(i) for i in range(len(categories))],
                default_float=float("nan"),  # missing or unknown: pandas' code -1, NaN to the trees
            )
        )
        nodes.append(helper.make_node("Cast", [coded], [column], to=number_type(boosted.dtype)))
        columns.append(column)
    return graph_inputs, columns


def _classified(boosted: Boosted, raw: str, nodes: list, initializers: list) -> list:
    """Probabilities as predict_proba gives them and the likeliest class as predict does."""
    from onnx import helper

    dtype = boosted.dtype
    if boosted.link == "logistic":
        initializers += [
            _tensor("logistic_scale", dtype, [1, 1], [boosted.logistic_scale]),
            _tensor("one", dtype, [1, 1], [1.0]),
        ]
        nodes += [
            helper.make_node("Mul", [raw, "logistic_scale"], ["scaled"]),
            helper.make_node("Sigmoid", ["scaled"], ["second_class"]),
            helper.make_node("Sub", ["one", "second_class"], ["first_class"]),
            helper.make_node("Concat", ["first_class", "second_class"], ["probabilities"], axis=1),
        ]
    elif boosted.link == "softmax":
        nodes.append(helper.make_node("Softmax", [raw], ["probabilities"], axis=1))
    else:
        raise NotImplementedError(
            f"a classifier whose scores go through {boosted.link!r} is not written here"
        )
    label_type, labels = class_labels(boosted.classes)
    initializers.append(helper.make_tensor("classes", label_type, [len(labels)], labels))
    nodes += [  # the first likeliest class on a tie, as numpy's argmax
        helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=0),
        helper.make_node("Gather", ["classes", "class_index"], ["label"], axis=0),
    ]
    return [
        helper.make_tensor_value_info("label", label_type, [None]),
        helper.make_tensor_value_info("probabilities", number_type(dtype), [None, len(labels)]),
    ]


def _lightgbm(model: Any, n_features: int) -> Boosted:
    dump = model.booster_.dump_model()
    if n_features != len(dump["feature_names"]):
        raise NotImplementedError(f"it takes {len(dump['feature_names'])} columns, the spec {n_features}")
    objective = dump["objective"].split()
    links = {
        "binary": "logistic",
        "multiclass": "softmax",
        "poisson": "exp",
        "gamma": "exp",
        "tweedie": "exp",
    }
    identity = ("regression", "regression_l1", "huber", "fair", "quantile", "mape")
    if objective[0] not in (*links, *identity) or "sqrt" in objective:
        raise NotImplementedError(f"its objective ({dump['objective']}) is not written here")
    n_targets = int(dump["num_tree_per_iteration"])
    trees = Ensemble()
    for index, info in enumerate(dump["tree_info"]):
        root = info["tree_structure"]
        if "leaf_value" in root:
            trees.add_leaf_tree(index % n_targets, _lightgbm_leaf(root))
        else:
            trees.roots.append(len(trees.feature))
            _lightgbm_node(trees, root, index % n_targets)
    scale = next((float(p.split(":")[1]) for p in objective if p.startswith("sigmoid:")), 1.0)
    return Boosted(
        trees,
        n_targets,
        np.dtype(np.float64),
        [[str(c) for c in known] for known in dump.get("pandas_categorical") or []],
        links.get(objective[0], "identity"),
        logistic_scale=scale,
        classes=getattr(model, "classes_", None),
    )


def _lightgbm_node(trees: Ensemble, node: dict, target: int) -> int:
    """Writes ``node`` and what is under it; its index among the nodes."""
    if node["decision_type"] == "==":
        members = [float(c) for c in str(node["threshold"]).split("||")]
        at = _split(trees, node["split_feature"], BRANCH_MEMBER, 0.0, nan_goes_true=False, members=members)
    elif node["decision_type"] == "<=":
        missing, threshold = node["missing_type"], float(node["threshold"])
        if missing == "Zero":
            raise NotImplementedError("it takes zero as missing (zero_as_missing): not written here")
        # NaN goes the default way where NaN is missing; elsewhere LightGBM reads it as 0.
        goes_left = node["default_left"] if missing == "NaN" else threshold >= 0.0
        at = _split(trees, node["split_feature"], BRANCH_LEQ, threshold, nan_goes_true=bool(goes_left))
    else:
        raise NotImplementedError(f"a split of kind {node['decision_type']!r} is not written here")
    for child, true_branch in ((node["left_child"], True), (node["right_child"], False)):
        if "leaf_value" in child:
            _branch(trees, at, true_branch, _add_leaf(trees, target, _lightgbm_leaf(child)), leaf=True)
        else:
            _branch(trees, at, true_branch, _lightgbm_node(trees, child, target), leaf=False)
    return at


def _lightgbm_leaf(leaf: dict) -> float:
    if "leaf_coeff" in leaf:
        raise NotImplementedError("its trees are linear (linear_tree): not written here")
    return float(leaf["leaf_value"])


def _xgboost(model: Any, n_features: int) -> Boosted:
    learner = json.loads(model.get_booster().save_raw("json"))["learner"]
    objective = learner["objective"]["name"]
    links = {
        "reg:squarederror": "identity", "reg:absoluteerror": "identity", "reg:pseudohubererror": "identity",
        "reg:quantileerror": "identity", "count:poisson": "exp", "reg:gamma": "exp", "reg:tweedie": "exp",
        "binary:logistic": "logistic", "multi:softprob": "softmax", "multi:softmax": "softmax",
    }  # fmt: skip
    if objective not in links:
        raise NotImplementedError(f"its objective ({objective}) is not written here")
    booster = learner["gradient_booster"]
    if booster["name"] != "gbtree":
        raise NotImplementedError(f"its booster is {booster['name']}, not trees alone")
    if int(learner["learner_model_param"]["num_feature"]) != n_features:
        raise NotImplementedError(
            f"it takes {learner['learner_model_param']['num_feature']} columns, the spec {n_features}"
        )
    forest = booster["model"]
    n_targets = max(1, int(learner["learner_model_param"]["num_class"]))
    best = getattr(model, "best_iteration", None)  # predict stops there when training stopped early
    kept = forest["iteration_indptr"][best + 1] if best is not None else len(forest["trees"])
    trees = Ensemble()
    for tree, target in zip(forest["trees"][:kept], forest["tree_info"][:kept], strict=True):
        _xgboost_tree(trees, tree, target)
    base = json.loads(learner["learner_model_param"]["base_score"])
    base = [float(b) for b in (base if isinstance(base, list) else [base])]
    link = links[objective]
    # base_score is an answer: the margin it starts from is the link's inverse of it.
    margin = {"exp": math.log, "logistic": lambda p: math.log(p / (1 - p))}.get(link, lambda v: v)
    return Boosted(
        trees,
        n_targets,
        np.dtype(np.float32),
        _xgboost_categories(forest.get("cats"), learner.get("feature_types") or []),
        link,
        baseline=[margin(b) for b in base] * (n_targets // len(base)),
        classes=getattr(model, "classes_", None),
    )


def _xgboost_tree(trees: Ensemble, tree: dict, target: int) -> None:
    left, right = tree["left_children"], tree["right_children"]
    if left[0] == -1:
        trees.add_leaf_tree(target, float(tree["split_conditions"][0]))
        return
    categorical = {
        node: tree["categories"][start : start + size]
        for node, start, size in zip(
            tree["categories_nodes"], tree["categories_segments"], tree["categories_sizes"], strict=True
        )
    }
    trees.roots.append(len(trees.feature))
    written: dict[int, int] = {}  # XGBoost's node id -> the ensemble's node index
    for node in range(len(left)):  # a parent's id is lower than its children's
        if left[node] == -1:
            continue
        feature, default_left = tree["split_indices"][node], bool(tree["default_left"][node])
        if tree["split_type"][node] == 1:  # a category in the set goes right
            members = [float(c) for c in categorical[node]]
            written[node] = _split(trees, feature, BRANCH_MEMBER, 0.0, not default_left, members)
            true_child, false_child = right[node], left[node]
        else:
            written[node] = _split(
                trees, feature, BRANCH_LT, float(tree["split_conditions"][node]), default_left
            )
            true_child, false_child = left[node], right[node]
        for child, true_branch in ((true_child, True), (false_child, False)):
            if left[child] == -1:
                leaf = _add_leaf(trees, target, float(tree["split_conditions"][child]))
                _branch(trees, written[node], true_branch, leaf, leaf=True)
    for node, at in written.items():  # the branches to nodes, now that every node has its index
        true_child, false_child = (
            (right[node], left[node]) if tree["split_type"][node] == 1 else (left[node], right[node])
        )
        for child, true_branch in ((true_child, True), (false_child, False)):
            if left[child] != -1:
                _branch(trees, at, true_branch, written[child], leaf=False)


def _xgboost_categories(cats: dict | None, feature_types: list[str]) -> list[list[str]]:
    """Each categorical feature's categories in the order of XGBoost's codes (its ``cats``)."""
    categorical = [j for j, kind in enumerate(feature_types) if kind == "c"]
    if not categorical:
        return []
    if not cats or not cats.get("enc"):
        raise NotImplementedError("it keeps no categories of its own (XGBoost before 3.1)")
    known = []
    for j in categorical:
        encoded = cats["enc"][j]
        text = bytes(encoded["values"])
        offsets = encoded["offsets"]
        known.append([text[a:b].decode() for a, b in itertools.pairwise(offsets)])
    return known


def _split(
    trees: Ensemble,
    feature: int,
    mode: int,
    split: float,
    nan_goes_true: bool,
    members: list[float] | None = None,
) -> int:
    at = len(trees.feature)
    trees.feature.append(int(feature))
    trees.mode.append(mode)
    trees.split.append(split)
    trees.nan_goes_true.append(int(nan_goes_true))
    if members is not None:
        trees.members += [*members, float("nan")]
    for column in (trees.true, trees.false, trees.true_leaf, trees.false_leaf):
        column.append(0)  # set by _branch
    return at


def _branch(trees: Ensemble, at: int, true_branch: bool, to: int, leaf: bool) -> None:
    (trees.true if true_branch else trees.false)[at] = to
    (trees.true_leaf if true_branch else trees.false_leaf)[at] = int(leaf)


def _add_leaf(trees: Ensemble, target: int, weight: float) -> int:
    trees.leaf_targets.append(target)
    trees.leaf_weights.append(weight)
    return len(trees.leaf_weights) - 1


def _tensor(name: str, dtype: np.dtype, shape: list[int], values: list[float]) -> Any:
    from onnx import helper

    return helper.make_tensor(name, number_type(dtype), shape, values)


READERS = {"lightgbm": _lightgbm, "xgboost": _xgboost}
