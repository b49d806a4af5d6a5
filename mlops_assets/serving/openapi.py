"""The OpenAPI document of the scoring service, from the model project's spec (written out once
per model: no per-request schema machinery)."""

from typing import Any

from mlops_assets.model.rows import ServingSpec
from mlops_assets.project.rules import MAX_ABS_VALUE, Feature

_LABEL_TYPES = {"boolean": "boolean", "integer": "integer", "categorical": "string", "numeric": "number"}


def feature_schema(feature: Feature) -> dict[str, Any]:
    """What the service accepts for one feature (a flagged range or category is scored, reported)."""
    if feature.kind == "categorical":
        schema: dict[str, Any] = {"type": "string"}
        if not feature.flag:
            schema["enum"] = list(feature.categories)
    elif feature.kind == "boolean":
        schema = {"type": "boolean"}
    else:
        schema = {"type": "integer" if feature.kind == "integer" else "number"}
        low, high = (-MAX_ABS_VALUE, MAX_ABS_VALUE) if feature.flag else (feature.low, feature.high)
        schema |= {"minimum": low, "maximum": high}
    if feature.nullable:
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    schema["description"] = f"{feature.name}: {feature.describe()}" + (
        " (outside it: scored and reported)" if feature.flag else ""
    )
    return schema


def openapi_document(spec: ServingSpec, max_rows: int) -> dict[str, Any]:
    n = len(spec.features)
    by_position = {
        "type": "array",
        "prefixItems": [feature_schema(f) for f in spec.features],
        "items": False,
        "minItems": n,
        "maxItems": n,
        "description": f"One row, in this order: {', '.join(spec.names)}",
    }
    by_name = {
        "type": "object",
        "properties": {f.name: feature_schema(f) for f in spec.features},
        "required": list(spec.names),
        "additionalProperties": False,
        "description": "One row, by feature name",
    }
    row = {"oneOf": [by_position, by_name]}
    result: dict[str, Any] = {"result": {"type": "array", "items": {"type": _LABEL_TYPES[spec.target_kind]}}}
    if spec.task != "regression":
        result["probabilities"] = {
            "type": "array",
            "items": {"type": "object", "additionalProperties": {"type": "number"}},
            "description": "Per row, each class label's probability (when the model has predict_proba)",
        }
    error = {
        "description": "A JSON message naming the problem",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
                }
            }
        },
    }
    plain = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    not_ready = {
        "description": "Not ready: no verified model, draining, or the request log can keep nothing",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
                }
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlops-assets scoring service", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/score": {
                "post": {
                    "summary": "Score rows with the served model (Azure ML's request/response contract)",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "traceparent",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "x-mlops-synthetic",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["data"],
                                    "properties": {
                                        "data": {
                                            "type": "array",
                                            "items": row,
                                            "minItems": 1,
                                            "maxItems": max_rows,
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per row"
                            + ("" if spec.task == "regression" else ": the class label"),
                            "headers": {
                                "x-model-version": {"schema": {"type": "string"}},
                                "x-request-id": {"schema": {"type": "string"}},
                            },
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["result"],
                                        "properties": result,
                                    }
                                }
                            },
                        },
                        "400": error,
                        "401": error,
                        "413": error,
                        "422": error,
                        "431": error,
                        "503": error,
                    },
                }
            },
            "/health/live": {"get": {"summary": "The process is up", "responses": {"200": plain}}},
            "/health/ready": {
                "get": {
                    "summary": "A verified model is loaded",
                    "responses": {"200": plain, "503": not_ready},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
