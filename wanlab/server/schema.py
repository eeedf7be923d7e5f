"""The service's OpenAPI description: the published request body, the task-result shape, errors, health.

FastAPI publishes it at ``/openapi.json`` (and ``/docs``); the tests fuzz the live server with it
(schemathesis). Bodies are validated by :mod:`wanlab.params`, not by these schemas (a client gets
wanlab's messages, never the framework's): the schemas say the same rules for tools and readers.
"""
from __future__ import annotations

from typing import Any

from ..params import (
    API_FRAMES,
    API_MODEL_NAMES,
    API_SIZES,
    FRAMES_RANGE,
    GUIDANCE_RANGE,
    LORA_SCALE_RANGE,
    MAX_LORAS,
    MAX_PROMPT_CHARS,
    SEED_MAX,
    SHIFT_RANGE,
    SIZE_MULTIPLE,
    SIZE_RANGE,
    STEPS_RANGE,
)
from ..tasks import TASK_TYPE
from ..taskstatus import FINISHED, TaskStatus
from .idempotency import MAX_CHARS, PATTERN

JSON = "application/json"


def request_body(local: bool, model_id: str | None = None) -> dict[str, Any]:
    """The JSON schema of ``POST /v3/async/wan-t2v`` (``local``: ``--allow-local-sizes``)."""
    if local:
        lo, hi = SIZE_RANGE
        size = {"type": "integer", "minimum": lo, "maximum": hi, "multipleOf": SIZE_MULTIPLE}
    else:
        size = {"type": "integer", "enum": sorted({n for pair in API_SIZES for n in pair})}
    names = list(API_MODEL_NAMES) + ([model_id] if model_id and model_id not in API_MODEL_NAMES else [])
    test_mode = {"type": "object", "additionalProperties": False, "properties": {
        "enabled": {"type": "boolean"}, "return_task_status": {"type": "string", "enum": [s.value for s in FINISHED]}}}
    webhook = {"type": "object", "additionalProperties": False, "required": ["url"], "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 2048, "format": "uri"}, "test_mode": test_mode}}
    lora = {"type": "object", "additionalProperties": False, "required": ["path"], "properties": {
        "path": {"type": "string", "minLength": 1, "description": "a file in the server's LoRA folders, a Hugging "
                 "Face repo id (owner/repo or owner/repo/file.safetensors) in its hub cache, or an https URL"},
        "scale": {"type": "number", "minimum": LORA_SCALE_RANGE[0], "maximum": LORA_SCALE_RANGE[1]}}}
    properties: dict[str, Any] = {
        "model_name": {"type": "string", "enum": names},
        "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
        "negative_prompt": {"type": "string", "maxLength": MAX_PROMPT_CHARS},
        "width": {**size, "description": "with height one of " + ", ".join(f"{w}x{h}" for w, h in API_SIZES)
                  + ("; any multiple of 16 on this server" if local else "") + "; 832x480 when either is missing"},
        "height": size,
        "seed": {"type": "integer", "minimum": -1, "maximum": SEED_MAX, "description": "-1 draws one"},
        "steps": {"type": "integer", "minimum": STEPS_RANGE[0], "maximum": STEPS_RANGE[1]},
        "guidance_scale": {"type": "number", "minimum": GUIDANCE_RANGE[0], "maximum": GUIDANCE_RANGE[1]},
        "flow_shift": {"type": "number", "minimum": SHIFT_RANGE[0], "maximum": SHIFT_RANGE[1]},
        "loras": {"type": "array", "maxItems": MAX_LORAS, "items": lora},
        "enable_safety_checker": {"type": "boolean", "description": "accepted and recorded; no safety checker "
                                  "runs on a wanlab server"},
        "fast_mode": {"type": "boolean", "description": "run wanlab's fastest acceleration preset that keeps PSNR "
                      ">= 30 dB (GET /health says which)"},
        "extra": {"type": "object", "additionalProperties": False, "properties": {"webhook": webhook}},
    }
    frames = list(range(FRAMES_RANGE[0], FRAMES_RANGE[1] + 1, 4)) if local else [API_FRAMES]
    properties["frames"] = {"type": "integer", "enum": frames, "description": "the frame count as the provider's "
                            "JavaScript SDK names it (num_frames by another name; both given must agree)"}
    if local:
        properties["num_frames"] = {"type": "integer", "enum": list(range(FRAMES_RANGE[0], FRAMES_RANGE[1] + 1, 4)),
                                    "description": "4k+1 (e.g. 17, 33, 81)"}
    out = {"type": "object", "required": ["prompt"], "additionalProperties": False, "properties": properties}
    if not local:  # a size is a pair; either one missing means 832x480
        out["anyOf"] = [{"not": {"required": ["width", "height"]}}] + [
            {"properties": {"width": {"const": w}, "height": {"const": h}}} for w, h in API_SIZES]
    return out


ERROR = {"type": "object", "required": ["code", "reason", "message", "metadata"], "properties": {
    "code": {"type": "integer"}, "reason": {"type": "string"}, "message": {"type": "string"},
    "metadata": {"type": "object"}}}

_STRING = {"type": "string"}
#: Strings the provider's Python SDK parses as integers: digits in every state (never "").
_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}
_INTEGER_TEXT = {"type": "string", "pattern": "^-?[0-9]+$"}
TASK_RESULT = {"type": "object", "required": ["task", "images", "videos", "audios", "extra"], "properties": {
    "task": {"type": "object", "required": ["task_id", "task_type", "status", "reason", "eta", "progress_percent"],
             "properties": {"task_id": _STRING, "task_type": {"type": "string", "enum": [TASK_TYPE]},
                            "status": {"type": "string", "enum": [s.value for s in TaskStatus]}, "reason": _STRING,
                            "eta": {"type": "integer", "minimum": 0},
                            "progress_percent": {"type": "integer", "minimum": 0, "maximum": 100}}},
    "images": {"type": "array", "maxItems": 0},
    "videos": {"type": "array", "items": {"type": "object", "required": ["video_url", "video_url_ttl", "video_type"],
                                          "properties": {"video_url": _STRING, "video_url_ttl": _DIGITS,
                                                         "video_type": {"type": "string", "enum": ["mp4"]}}}},
    "audios": {"type": "array", "maxItems": 0},
    "extra": {"type": "object", "required": ["seed", "debug_info", "wanlab"], "properties": {
        "seed": _INTEGER_TEXT, "wanlab": {"type": "object"},
        "debug_info": {"type": "object", "required": ["request_info", "submit_time_ms", "execute_time_ms",
                                                      "complete_time_ms"], "properties": {
            "request_info": _STRING, **{f"{n}_time_ms": _DIGITS for n in ("submit", "execute", "complete")}}}}},
}}
SUBMITTED = {"type": "object", "required": ["task_id"], "properties": {"task_id": _STRING}}
HEALTH = {"type": "object", "required": ["status", "version", "model", "server"], "properties": {
    "status": {"type": "string", "enum": ["ok", "loading", "failed", "stopping"]}, "version": _STRING,
    "model": {"type": ["object", "null"]}, "server": {"type": "object"}, "queue": {"type": ["object", "null"]},
    "reason": _STRING}}


def responses(*codes: int, ok: dict[str, Any] | None = None, ok_status: int = 200) -> dict[int | str, Any]:
    """OpenAPI ``responses`` for a route: its success body and the error bodies it may answer with."""
    out: dict[int | str, Any] = {}
    if ok is not None:
        out[ok_status] = {"description": "success", "content": {JSON: {"schema": ok}}}
    words = {400: "an invalid field (field, rule and value in metadata)", 401: "no API key, or a wrong one",
             403: "an altered or expired signed URL", 404: "no such task for this key, or no such file",
             405: "method not allowed", 408: "the body did not arrive whole in time",
             409: "the Idempotency-Key was used before with another request body",
             413: "the body is over the size limit",
             415: "the body is not JSON (Content-Type: application/json)", 416: "the byte range is outside the file",
             429: "the queue is full, or this key has --max-queued-per-key tasks waiting (metadata.limit says "
                  "which; Retry-After says when to try again)",
             503: "the model is loading or the server is stopping (Retry-After)",
             507: "the server's disk is full; nothing was accepted (Retry-After)"}
    for code in codes:
        out[code] = {"description": words[code], "content": {JSON: {"schema": ERROR}}}
    return out


IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False, "description":
                   "a wanlab extension: the same key with the same body again (e.g. after a lost answer) returns the "
                   "task accepted first instead of a new one; keys are per API key and kept across restarts",
                   "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS, "pattern": PATTERN}}


WAIT = {"name": "wanlab_wait", "in": "query", "required": False, "description":
        "a wanlab extension (a long poll): answer once the task's status or progress changes or it ends, at most "
        "this many seconds from now (default 0: at once)",
        "schema": {"type": "number", "minimum": 0, "maximum": 30}}


def security() -> dict[str, Any]:
    """The OpenAPI security scheme: a Bearer API key."""
    return {"bearer": {"type": "http", "scheme": "bearer", "description": "an API key of this server"}}
