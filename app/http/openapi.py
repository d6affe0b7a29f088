"""The API described (OpenAPI 3.1), next to the code it describes; GET /openapi.json.

The request parameters come from the table in parameters.py that request parsing
reads with, the error codes are the ones errors.py answers; the tests validate this
document and run schemathesis against the server.
"""

from __future__ import annotations

from .openapi_schemas import BINARY, FIXED_SCHEMAS
from .parameters import PARAMETERS
from .request_parsing import RAW_IMAGE_TYPES

ERROR_CODES = {
    "400": ("Bad request: missing or unreadable image, bad parameter", "missing_image, invalid_base64, ..."),
    "401": ("API_KEYS is set and the request carries no valid key", "unauthorized"),
    "404": ("Unknown path", "not_found"),
    "405": ("Method not allowed", "method_not_allowed"),
    "406": ("The Accept header allows none of the answer's media types", "not_acceptable"),
    "413": ("Body over MAX_UPLOAD_MB, or photo over MAX_IMAGE_MEGAPIXELS", "payload_too_large, image_too_large"),
    "415": ("Content-Type is none of the three request forms", "unsupported_media_type"),
    "500": ("A fault of the server; the body carries the request id that is in the log", "internal_error"),
    "503": (
        "Not ready, the queue full or the deadline passing, or (from nginx) starting, stopping or timed out",
        "not_ready, busy, deadline_exceeded, unavailable, timeout",
    ),
}


def _query_parameters() -> list[dict]:
    return [
        {
            "name": parameter.name,
            "in": "query",
            "required": False,
            "schema": parameter.text_schema(),
            "description": parameter.description,
        }
        for parameter in PARAMETERS
    ]


def _error_response(description: str, codes: str) -> dict:
    return {
        "description": f"{description} (code: {codes})",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _errors(*statuses: str) -> dict:
    return {status: _error_response(*ERROR_CODES[status]) for status in statuses}


def _invocation_answer() -> dict:
    """The 200 of /invocations (and /upload) in each of its media types (render.MEDIA_TYPES)."""
    return {
        "description": "Counts per class, the annotated photo, the boxes when asked; in the format that "
        "`format` names, else in the one the Accept header prefers",
        "headers": {
            "X-Request-ID": {"schema": {"type": "string"}, "description": "Also in the log"},
            "X-Stat": {
                "schema": {"type": "string"},
                "description": "With image/jpeg: the counts of the classes found, a JSON object",
            },
        },
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/InvocationResult"},
                        {"$ref": "#/components/schemas/CocoDataset"},
                    ]
                }
            },
            "image/jpeg": {"schema": BINARY},
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "The columns of `python -m app count`; with format=long a row per class",
                }
            },
            "application/x-ndjson": {
                "schema": {
                    "type": "string",
                    "description": "One JSON line per photo, as `python -m app count --format jsonl`",
                }
            },
        },
    }


def _json_answer(description: str, schema: dict) -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def _label_studio_paths() -> dict:
    """Label Studio's ML backend contract (app/http/label_studio.py): what Label Studio sends
    and reads; bodies are open objects, as Label Studio adds fields between releases."""
    health = {
        "get": {
            "summary": "Label Studio's health check: the model is loaded (never waits behind photos)",
            "responses": {**_json_answer("Up", {"$ref": "#/components/schemas/LabelStudioHealth"}), **_errors("503")},
        }
    }

    def post(summary: str, body: str, answer: dict, required: bool = True) -> dict:
        return {
            "post": {
                "summary": summary,
                "requestBody": {
                    "required": required,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
                },
                "responses": {
                    **_json_answer("Done", answer),
                    **_errors("400", "401", "413", "415", "500", "503"),
                },
            }
        }

    version = {"type": "object", "properties": {"model_version": {"type": "string"}}}
    return {
        "/label-studio/": health,
        "/label-studio/health": health,
        "/label-studio/versions": {
            "get": {
                "summary": "The model versions Label Studio may choose from: the one served",
                "responses": {
                    **_json_answer(
                        "Versions",
                        {"type": "object", "properties": {"versions": {"type": "array", "items": {"type": "string"}}}},
                    ),
                    **_errors("401", "503"),
                },
            }
        },
        "/label-studio/setup": post(
            "Connect a project: its labelling config is checked against the classes", "LabelStudioSetup", version
        ),
        "/label-studio/predict": post(
            "Pre-label tasks: a prediction (rectangles in percent of the photo) per task",
            "LabelStudioPredict",
            {
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": {"type": "object"}},
                    "model_version": {"type": "string"},
                },
            },
        ),
        "/label-studio/webhook": post(
            "Project events; there is nothing to train, answered at once",
            "LabelStudioEvent",
            {"type": "object", "properties": {"status": {"type": "string"}}},
            required=False,  # answered whatever comes
        ),
    }


def openapi_document() -> dict:
    invocation_errors = _errors("400", "401", "406", "413", "415", "500", "503")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Darknet detection service",
            "version": "1.0.0",
            "description": "Counts objects in a photo with a darknet YOLO model and returns the annotated photo.",
        },
        # Keys are needed only when the operator sets API_KEYS: none is one of the options.
        "security": [{}, {"bearer": []}, {"basic": []}, {"apiKey": []}],
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": _json_answer("OpenAPI 3.1", {"type": "object"}),
                }
            },
            "/ping": {
                "get": {
                    "summary": "Ready check: 200 once the model is loaded",
                    "responses": {
                        "200": {
                            "description": "Ready",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pong"}}},
                        },
                        **_errors("503"),
                    },
                }
            },
            "/invocations": {
                "post": {
                    "summary": "Count the objects in one photo",
                    "parameters": _query_parameters(),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/JsonInvocation"}},
                            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/FormInvocation"}},
                            **{media: {"schema": BINARY} for media in sorted(RAW_IMAGE_TYPES)},
                        },
                    },
                    "responses": {
                        "200": _invocation_answer(),
                        **invocation_errors,
                    },
                }
            },
            "/upload": {
                "post": {
                    "summary": "The original service's endpoint, kept for its front end: use /invocations",
                    "deprecated": True,
                    "requestBody": {
                        "required": True,
                        "content": {"multipart/form-data": {"schema": {"$ref": "#/components/schemas/Upload"}}},
                    },
                    "responses": {
                        "200": {**_invocation_answer(), "description": "The same answers as /invocations"},
                        **invocation_errors,
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "The model being served",
                    "responses": {
                        "200": {
                            "description": "Classes, network size, engine, file hashes",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelInfo"}}},
                        },
                        **_errors("401", "503"),
                    },
                }
            },
            "/execution-parameters": {
                "get": {
                    "summary": "SageMaker batch transform limits",
                    "responses": {
                        "200": {
                            "description": "Limits",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ExecutionParameters"}}
                            },
                        },
                        **_errors("401"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of all workers",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors("401"),
                    },
                }
            },
            **_label_studio_paths(),
        },
        "components": {
            "schemas": {
                **FIXED_SCHEMAS,
                "JsonInvocation": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "description": "Base64 of the photo; a data URL is accepted"},
                        **{parameter.name: parameter.schema() for parameter in PARAMETERS},
                    },
                },
                "FormInvocation": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": BINARY,
                        **{parameter.name: parameter.text_schema() for parameter in PARAMETERS},
                    },
                },
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "When API_KEYS is set"},
                # api_keys.py: what Label Studio's ML backend form sends.
                "basic": {"type": "http", "scheme": "basic", "description": "Any user name, a key as the password"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
