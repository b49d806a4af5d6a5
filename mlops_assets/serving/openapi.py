"""The OpenAPI document of the scoring service, written out (no per-request schema machinery)."""

from typing import Any

from mlops_assets.serving.artifact import MAX_ABS_VALUE


def openapi_document(n_features: int, feature_names: list[str], max_rows: int) -> dict[str, Any]:
    row = {
        "type": "array",
        "items": {"type": "number", "minimum": -MAX_ABS_VALUE, "maximum": MAX_ABS_VALUE},
        "minItems": n_features,
        "maxItems": n_features,
        "description": f"One row: {', '.join(feature_names)}",
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
                            "description": "One prediction per row",
                            "headers": {
                                "x-model-version": {"schema": {"type": "string"}},
                                "x-request-id": {"schema": {"type": "string"}},
                            },
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["result"],
                                        "properties": {
                                            "result": {"type": "array", "items": {"type": "number"}}
                                        },
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
