"""The hosted API's task-result shape (``GET /v3/async/task-result``), field for field.

::

    {"task": {"task_id", "task_type": "WAN_TXT_TO_VIDEO", "status", "reason", "eta", "progress_percent"},
     "images": [],
     "videos": [{"video_url", "video_url_ttl", "video_type": "mp4"}],
     "audios": [],
     "extra": {"seed": "<string>", "debug_info": {"request_info", "submit_time_ms", "execute_time_ms",
                                                  "complete_time_ms"},
               "wanlab": {...}}}

``eta`` (seconds) and ``progress_percent`` are integers, never null; ``video_url_ttl`` is a string
of seconds; ``seed`` and the ``*_time_ms`` (epoch milliseconds, ``"0"`` until they happen) are
strings of an integer in every state, as the provider's Python SDK parses them (``"-1"`` for a seed
never drawn). wanlab's
own additions (run key, resolved request, acceleration, store) live under ``extra.wanlab`` only.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..taskstatus import FINISHED, TaskStatus

TASK_TYPE = "WAN_TXT_TO_VIDEO"
#: How long an in-process ``file://`` video URL is promised to stay valid (a store keeps its runs).
LOCAL_URL_TTL = 86400


def ms(t: float | None) -> str:
    """Epoch seconds as the API's millisecond string (``"0"`` when the moment has not come).

    Args:
        t: epoch seconds, or None.

    Returns:
        The milliseconds as a string of an integer.

    Example:
        >>> ms(1700000000.25), ms(None)
        ('1700000000250', '0')
    """
    return "0" if t is None else str(int(t * 1000))


def make_video_entry(url: str, ttl: int, video_type: str = "mp4") -> dict[str, str]:
    """One ``videos`` entry of a result, made from a video's URL, its lifetime and type.

    Args:
        url: where the video can be downloaded.
        ttl: seconds the URL stays valid.
        video_type: the container, ``"mp4"``.

    Returns:
        The entry, its ttl a string of seconds.

    Example:
        >>> make_video_entry("file:///runs/ab/video.mp4", 86400)
        {'video_url': 'file:///runs/ab/video.mp4', 'video_url_ttl': '86400', 'video_type': 'mp4'}
    """
    return {"video_url": url, "video_url_ttl": str(int(ttl)), "video_type": video_type}


def make_task_result(*, task_id: str, status: TaskStatus, reason: str = "", eta: float = 0.0, progress: int = 0,
                videos: Sequence[Mapping[str, str]] = (), seed: int | None = None,
                request: Mapping[str, Any] | None = None, submitted: float | None = None,
                started: float | None = None, finished: float | None = None,
                wanlab: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A task result in the published shape (see the module docstring), made from the task's fields.

    Args:
        task_id: the task's id.
        status: its status.
        reason: why it failed ("" unless FAILED).
        eta: seconds still to wait (rounded up; 0 once finished).
        progress: percent done.
        videos: its ``videos`` entries (:func:`make_video_entry`).
        seed: the seed it runs with (None: not drawn yet, ``"-1"``).
        request: the request as submitted (``debug_info.request_info``, JSON).
        submitted: when it was accepted (epoch seconds).
        started: when it started (None: not yet).
        finished: when it ended (None: not yet).
        wanlab: wanlab's own additions (``extra.wanlab``).

    Returns:
        The result dict.

    Example:
        >>> make_task_result(task_id="t", status=TaskStatus.QUEUED, eta=2.5)["task"]["eta"]
        3
    """
    return {
        "task": {"task_id": task_id, "task_type": TASK_TYPE, "status": status, "reason": reason,
                 "eta": 0 if status in FINISHED else math.ceil(max(eta, 0.0)),
                 "progress_percent": int(progress)},
        "images": [],
        "videos": [dict(v) for v in videos],
        "audios": [],
        "extra": {"seed": "-1" if seed is None else str(seed),
                  "debug_info": {"request_info": json.dumps(dict(request or {}), sort_keys=True),
                                 "submit_time_ms": ms(submitted), "execute_time_ms": ms(started),
                                 "complete_time_ms": ms(finished)},
                  "wanlab": dict(wanlab or {})},
    }
