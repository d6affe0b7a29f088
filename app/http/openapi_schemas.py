"""The OpenAPI document's fixed schemas: the answers, errors and /upload's form
(app/http/openapi.py holds the paths, and the request schemas the parameter table makes)."""

BINARY = {"type": "string", "format": "binary"}

FIXED_SCHEMAS = {
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
    "Upload": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": BINARY,
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
            "tiles": {
                "description": "A tiled photo's tiles: those the model ran, and those skipped because they "
                "cannot hold an object (too little contrast, or outside auto_crop's sample); the whole-photo "
                "pass always runs. Absent where the photo was not tiled",
                "type": "object",
                "required": ["run", "skipped"],
                "properties": {
                    "run": {"type": "integer", "minimum": 0},
                    "skipped": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
    "CocoDataset": {
        "type": "object",
        "description": "With format=coco: a COCO detection dataset of the photo (image id 1); "
        "category ids are the .names lines from 1",
        "required": ["images", "annotations", "categories"],
        "properties": {
            "images": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "file_name", "width", "height"],
                    "properties": {
                        "id": {"type": "integer", "minimum": 1},
                        "file_name": {"type": "string"},
                        "width": {"type": "integer", "minimum": 1},
                        "height": {"type": "integer", "minimum": 1},
                    },
                },
            },
            "annotations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "image_id", "category_id", "bbox", "area", "iscrowd", "score"],
                    "properties": {
                        "id": {"type": "integer", "minimum": 1},
                        "image_id": {"type": "integer", "minimum": 1},
                        "category_id": {"type": "integer", "minimum": 1},
                        "bbox": {
                            "type": "array",
                            "description": "x, y, width, height in pixels, top-left origin",
                            "items": {"type": "number"},
                            "minItems": 4,
                            "maxItems": 4,
                        },
                        "area": {"type": "number", "minimum": 0},
                        "iscrowd": {"const": 0},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                },
            },
            "categories": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "name"],
                    "properties": {"id": {"type": "integer", "minimum": 1}, "name": {"type": "string"}},
                },
            },
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
        "required": [
            "classes",
            "network",
            "engine",
            "device",
            "precision",
            "selection",
            "files",
            "load_seconds",
            "version",
            "default_threshold",
            "default_threshold_source",
        ],
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
            "precision": {"type": "string", "enum": ["fp32", "bf16", "int8"]},
            "selection": {
                "type": "string",
                "description": "Why this engine and precision serve (PRECISION=auto: what calibrate measured here)",
            },
            "engine_build": {
                "type": ["string", "null"],
                "description": "Which build of the engine's library serves, where it says: for darknet, "
                "the source, its commit and the build flags",
            },
            "files": {"type": "object", "additionalProperties": {"type": "string"}},
            "load_seconds": {"type": "number"},
            "version": {"type": "string", "description": "The service's version"},
            "default_threshold": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "The threshold where a request names none; follows a newly saved threshold file "
                "without a restart",
            },
            "default_threshold_source": {
                "type": "string",
                "description": "Where it comes from: DEFAULT_THRESHOLD, the file evaluate --save-threshold wrote, "
                "or darknet's default",
            },
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
    # Label Studio's ML backend bodies: the fields the service reads; Label Studio sends more.
    "LabelStudioHealth": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"const": "UP"},
            "model_class": {"type": "string"},
            "model_version": {"type": "string"},
        },
    },
    "LabelStudioSetup": {
        "type": "object",
        "properties": {
            "project": {"type": "string"},
            "schema": {"type": "string", "description": "The project's labelling config (XML)"},
            "hostname": {"type": "string"},
            "access_token": {"type": "string"},
            "model_version": {"type": "string"},
        },
    },
    "LabelStudioPredict": {
        "type": "object",
        "required": ["tasks"],
        "properties": {
            "tasks": {
                "type": "array",
                "items": {"type": "object", "description": "A task; data.<the Image's value> is the photo's URL"},
            },
            "label_config": {"type": "string", "description": "The project's labelling config (XML)"},
            "project": {"type": "string"},
        },
    },
    "LabelStudioEvent": {"description": "Any project event Label Studio sends: each is answered alike"},
}
