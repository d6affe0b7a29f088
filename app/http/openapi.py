"""The API described (OpenAPI 3.1), next to the code it describes; GET /openapi.json.

The parameter bounds and error codes are the ones request_parsing.py and errors.py
enforce; the tests validate this document and run schemathesis against the server.
"""

from __future__ import annotations

from app.vision.detection import DEFAULT_NMS, DEFAULT_THRESHOLD
from app.vision.tiling import TILING_MODES

from .request_parsing import RAW_IMAGE_TYPES

ERROR_CODES = {
    "400": ("Bad request: missing or unreadable image, bad parameter", "missing_image, invalid_base64, ..."),
    "401": ("API_KEYS is set and the request carries no valid key", "unauthorized"),
    "404": ("Unknown path", "not_found"),
    "405": ("Method not allowed", "method_not_allowed"),
    "406": ("The Accept header allows neither JSON nor image/jpeg", "not_acceptable"),
    "413": ("Body over MAX_UPLOAD_MB, or photo over MAX_IMAGE_MEGAPIXELS", "payload_too_large, image_too_large"),
    "415": ("Content-Type is none of the three request forms", "unsupported_media_type"),
    "500": ("A fault of the server; the body carries the request id that is in the log", "internal_error"),
    "503": (
        "Not ready, the queue full or the deadline passing, or (from nginx) starting, stopping or timed out",
        "not_ready, busy, deadline_exceeded, unavailable, timeout",
    ),
}


def _fraction(description: str, default: float) -> dict:
    return {"type": "number", "minimum": 0, "maximum": 1, "default": default, "description": description}


PARAMETERS = {
    "threshold": _fraction("Keep a box when objectness x class probability is above this", DEFAULT_THRESHOLD),
    "nms": _fraction("IoU above which a box of the same class is suppressed", DEFAULT_NMS),
    "classes": {
        "description": "Class names to keep (others count 0): a list, or names separated by commas",
        "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
    },
    "return_image": {"type": "boolean", "default": True, "description": "Include the annotated JPEG as `img`"},
    "detections": {"type": "boolean", "default": False, "description": "Include the list of boxes"},
    "tiling": {
        "type": "string",
        "enum": list(TILING_MODES),
        "default": "auto",
        "description": "Tiles at full resolution for small objects; auto: photos over twice the network input",
    },
    "auto_crop": {
        "type": "boolean",
        "default": False,
        "description": "Count only the sample, the largest saturated region (a stained drop); the answer has `crop`",
    },
    "filename": {"type": "string", "description": "Echoed into the log"},
}


def _query_parameters() -> list[dict]:
    parameters = []
    for name, schema in PARAMETERS.items():
        # In a query string everything is text: lists comma-separated, booleans as words.
        query_schema = {"type": "string"} if name == "classes" else dict(schema)
        if schema.get("type") == "boolean":
            query_schema = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]}
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": query_schema,
                "description": schema["description"],
            }
        )
    return parameters


def _error_response(description: str, codes: str) -> dict:
    return {
        "description": f"{description} (code: {codes})",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _errors(*statuses: str) -> dict:
    return {status: _error_response(*ERROR_CODES[status]) for status in statuses}


def openapi_document() -> dict:
    binary = {"type": "string", "format": "binary"}
    invocation_errors = _errors("400", "401", "406", "413", "415", "500", "503")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Darknet detection service",
            "version": "1.0.0",
            "description": "Counts objects in a photo with a darknet YOLO model and returns the annotated photo.",
        },
        # Keys are needed only when the operator sets API_KEYS: none is one of the options.
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "paths": {
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
                            **{media: {"schema": binary} for media in sorted(RAW_IMAGE_TYPES)},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Counts per class, the annotated photo, the boxes when asked",
                            "headers": {
                                "X-Request-ID": {"schema": {"type": "string"}, "description": "Also in the log"}
                            },
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/InvocationResult"}},
                                "image/jpeg": {"schema": binary},
                            },
                        },
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
                        "200": {
                            "description": "The same answer as /invocations",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/InvocationResult"}}
                            },
                        },
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
        },
        "components": {
            "schemas": {
                "Pong": {"type": "object", "required": ["data"], "properties": {"data": {"const": "pong!"}}},
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                                "message": {"type": "string"},
                                "request_id": {"type": "string"},
                            },
                        }
                    },
                },
                "JsonInvocation": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "description": "Base64 of the photo; a data URL is accepted"},
                        **PARAMETERS,
                    },
                },
                "FormInvocation": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": binary,
                        **{name: {"type": "string", "description": s["description"]} for name, s in PARAMETERS.items()},
                    },
                },
                "Upload": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": binary,
                        "auto_crop": {"type": "string", "enum": ["0", "1"], "default": "0"},
                    },
                },
                "InvocationResult": {
                    "type": "object",
                    "required": ["stat"],
                    "properties": {
                        "img": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/jpeg"},
                        "stat": {
                            "type": "object",
                            "description": "A count for every class of the model, in .names order",
                            "additionalProperties": {"type": "integer", "minimum": 0},
                        },
                        "detections": {"type": "array", "items": {"$ref": "#/components/schemas/Detection"}},
                        "crop": {
                            "description": "With auto_crop: the sample counted, x, y, width, height in the photo's "
                            "pixels; null when none was found and the whole photo was counted",
                            "oneOf": [
                                {
                                    "type": "array",
                                    "items": {"type": "integer", "minimum": 0},
                                    "minItems": 4,
                                    "maxItems": 4,
                                },
                                {"type": "null"},
                            ],
                        },
                        "crop_note": {"type": "string"},
                    },
                },
                "Detection": {
                    "type": "object",
                    "required": ["class", "confidence", "box"],
                    "properties": {
                        "class": {"type": "string"},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        "box": {
                            "type": "array",
                            "description": "x, y, width, height in pixels, top-left origin",
                            "items": {"type": "number", "minimum": 0},
                            "minItems": 4,
                            "maxItems": 4,
                        },
                    },
                },
                "ModelInfo": {
                    "type": "object",
                    "required": ["classes", "network", "engine", "device", "precision", "files", "load_seconds"],
                    "properties": {
                        "classes": {"type": "array", "items": {"type": "string"}},
                        "network": {
                            "type": "object",
                            "properties": {
                                "width": {"type": "integer"},
                                "height": {"type": "integer"},
                                "letter_box": {"type": "boolean"},
                            },
                        },
                        "engine": {"type": "string"},
                        "device": {"type": "string"},
                        "precision": {"type": "string", "enum": ["fp32", "int8"]},
                        "files": {"type": "object", "additionalProperties": {"type": "string"}},
                        "load_seconds": {"type": "number"},
                    },
                },
                "ExecutionParameters": {
                    "type": "object",
                    "required": ["MaxConcurrentTransforms", "BatchStrategy", "MaxPayloadInMB"],
                    "properties": {
                        "MaxConcurrentTransforms": {"type": "integer", "minimum": 1},
                        "BatchStrategy": {"type": "string"},
                        "MaxPayloadInMB": {"type": "integer", "minimum": 1},
                    },
                },
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "When API_KEYS is set"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
