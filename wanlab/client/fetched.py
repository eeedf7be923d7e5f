"""A finished task's downloads as a :class:`~wanlab.Video` with a record that says where it came from.

- From a wanlab server: the run's record and lossless copy (frames bit for bit, checked against the
  record's digest) and its playable mp4, all kept as they are when the run is stored.
- From the hosted API (or any other service): the mp4 as served, decoded; the record says
  ``exact: false`` and names the service, its ``model_name``, the task id and the service's own
  timings (``debug_info``). All-black frames are a failure, as they are locally.

Neither record ever holds the API key or a video URL (a signed URL is a credential while it lasts).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import GenerationError, ParamError, ServiceError
from ..frames import WAN_FPS, frames_digest
from ..keys import accel_dict
from ..params import Params
from ..record import now_iso
from ..video import OWN_FIELDS, RUN_LOSSLESS, RUN_MP4, Video, read_frames
from .download import DownloadError, fetch_json
from .polling import moment

if TYPE_CHECKING:  # pragma: no cover
    from .remote import Remote

#: Record fields of a server's run that its store wrote (the client's store writes its own).
STORE_FIELDS = ("key", "key_parts", "store_format", "extra", "files", "stored")
#: Record fields a Video writes from its frames and timings (a generated video's record holds the rest).
FRAME_FIELDS = tuple(k for k in OWN_FIELDS if k not in ("params", "model"))
LOSSLESS_NAMES = ("lossless_url", "lossless", "video_lossless_url")
RECORD_NAMES = ("record_url", "record")
VIDEO_TYPES = ("mp4", "gif")


def _links(result: Mapping[str, Any]) -> Mapping[str, Any]:
    extra: Any = result.get("extra") if isinstance(result.get("extra"), Mapping) else {}
    wanlab: Any = extra.get("wanlab") if isinstance(extra.get("wanlab"), Mapping) else {}
    nested = {k: v for name in ("files", "links") if isinstance(wanlab.get(name), Mapping)
              for k, v in wanlab[name].items()}
    return {**wanlab, **nested}


def lossless_link(result: Mapping[str, Any]) -> str | None:
    """The URL of a wanlab server's lossless copy of the task's run (None when it gives none).

    Args:
        result: the task result.

    Returns:
        The URL, or None.
    """
    links = _links(result)
    return next((links[k] for k in LOSSLESS_NAMES if isinstance(links.get(k), str) and links[k]), None)


def record_link(result: Mapping[str, Any]) -> str | None:
    """The URL of the run record a wanlab server links in a task result (None: it links none).

    Args:
        result: the task result.

    Returns:
        The URL, or None.
    """
    links = _links(result)
    return next((links[k] for k in RECORD_NAMES if isinstance(links.get(k), str) and links[k]), None)


def _digests(result: Mapping[str, Any]) -> Mapping[str, str]:
    """Files' sha256 by run-folder name, where the server gives them."""
    found = _links(result).get("sha256")
    return {k: v for k, v in found.items() if isinstance(v, str)} if isinstance(found, Mapping) else {}


def first_video(result: Mapping[str, Any], task_id: str) -> tuple[str, str]:
    """The first video's URL and type (``mp4`` or ``gif``), read from a SUCCEED result's ``videos``.

    Args:
        result: the finished task's result.
        task_id: its id, for messages.

    Returns:
        ``(url, type)``.

    Raises:
        DownloadError: no ``video_url``.
        ServiceError: a ``video_type`` other than mp4 or gif.

    Example:
        >>> first_video({"videos": [{"video_url": "https://x.org/v.mp4", "video_type": "mp4"}]}, "t")
        ('https://x.org/v.mp4', 'mp4')
    """
    videos = result.get("videos")
    entry = videos[0] if isinstance(videos, list) and videos and isinstance(videos[0], Mapping) else {}
    url = entry.get("video_url")
    if not isinstance(url, str) or not url:
        raise DownloadError(f"task {task_id} succeeded but its result lists no video_url")
    kind = str(entry.get("video_type") or "mp4").lower()
    if kind not in VIDEO_TYPES:
        raise ServiceError(f"task {task_id}: video_type must be one of {', '.join(VIDEO_TYPES)}; got {kind!r}")
    return url, kind


def service_entry(remote: Remote, task_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The record's ``service`` entry: where the run came from (no key, no video URL).

    Args:
        remote: the client.
        task_id: the task's id.
        result: its finished result.

    Returns:
        ``url``, ``kind``, ``task_id``, ``model_name``, ``seed``, ``debug_info`` (and ``run_key``
        from a wanlab server).
    """
    extra: Any = result.get("extra") if isinstance(result.get("extra"), Mapping) else {}
    entry = {"url": remote.base_url, "kind": remote.kind, "task_id": task_id,
             "model_name": remote.identity.settings.get("model_name", remote.identity.model_id),
             "seed": extra.get("seed"), "debug_info": dict(extra.get("debug_info") or {})}
    run_key = _links(result).get("run_key")
    if run_key:
        entry["run_key"] = run_key
    return entry


def service_timings(debug: Mapping[str, Any]) -> dict[str, float]:
    """The service's own timings (seconds) from ``debug_info``'s epoch-millisecond strings.

    Args:
        debug: a result's ``debug_info``.

    Returns:
        ``queue`` (submit to start), ``generate`` (start to complete) and ``total``, each where both
        moments are known.

    Example:
        >>> service_timings({"submit_time_ms": "1000", "execute_time_ms": "3000", "complete_time_ms": "9000"})
        {'queue': 2.0, 'generate': 6.0, 'total': 8.0}
    """
    submit, execute, complete = (moment(debug, f"{n}_time_ms") for n in ("submit", "execute", "complete"))
    out = {}
    if submit is not None and execute is not None:
        out["queue"] = max(execute - submit, 0.0)
    if execute is not None and complete is not None:
        out["generate"] = max(complete - execute, 0.0)
    if submit is not None and complete is not None:
        out["total"] = max(complete - submit, 0.0)
    return out


def wanlab_video(remote: Remote, task_id: str, result: Mapping[str, Any], params: Params | None,
                 folder: Path) -> Video:
    """A wanlab server's run: record, lossless copy (checked against the record's digest) and mp4.

    Args:
        remote: the client.
        task_id: the task's id.
        result: its finished result.
        params: the request asked (None: not known here); the record must hold the same.
        folder: where the files are downloaded.

    Returns:
        The exact :class:`~wanlab.Video` with the server's record.

    Raises:
        ServiceError: no record or lossless link, or the server ran another request.
        DownloadError: a download failed, the record is not a run record, or the frames do not match
            its digest or the playable mp4.
    """
    record_url, lossless_url = record_link(result), lossless_link(result)
    if record_url is None or lossless_url is None:
        raise ServiceError(f"task {task_id}: the server's result links no record and lossless copy")
    digests = _digests(result)
    url, _ = first_video(result, task_id)
    # the three files at once: on a busy server each request waits its turn
    mp4_ = remote.in_parallel(remote.download, remote.transport.url(url), folder / RUN_MP4, digests.get(RUN_MP4))
    lossless_ = remote.in_parallel(remote.download, remote.transport.url(lossless_url), folder / RUN_LOSSLESS,
                                   digests.get(RUN_LOSSLESS))
    try:
        record = fetch_json(remote.transport, remote.transport.url(record_url), policy=remote.net_policy)
    finally:
        wait([mp4_, lossless_])  # nothing writes into the folder after this returns or raises
    mp4, lossless = mp4_.result(), lossless_.result()
    if not isinstance(record, Mapping) or "params" not in record or "digest" not in record:
        raise DownloadError(f"task {task_id}: the server's record is not a wanlab run record")
    p = Params.from_dict(record["params"])
    if params is not None and p.to_dict() != params.to_dict():
        raise ServiceError(f"task {task_id}: the server ran another request than was asked "
                           f"(record {p.to_dict()} vs asked {params.to_dict()})")
    frames, _ = _frames(lossless.path, task_id)
    if frames_digest(frames) != record["digest"]:
        raise DownloadError(f"task {task_id}: the lossless copy's frames are not those of the record's digest")
    _check_playable(mp4.path, frames.shape, task_id)
    kept = {k: v for k, v in record.items() if k not in FRAME_FIELDS and k not in STORE_FIELDS}
    kept["service"] = {**service_entry(remote, task_id, result), "downloaded": {
        RUN_MP4: {"bytes": mp4.size, "sha256": mp4.sha256}, RUN_LOSSLESS: {"bytes": lossless.size,
                                                                            "sha256": lossless.sha256}},
        "download_s": mp4.seconds + lossless.seconds}
    return Video(frames, fps=float(record.get("fps") or WAN_FPS), params=p, model=dict(record.get("model") or {}),
                 timings=dict(record.get("timings") or {}), record=kept,
                 files={RUN_MP4: mp4.path, RUN_LOSSLESS: lossless.path})


def api_video(remote: Remote, task_id: str, result: Mapping[str, Any], params: Params | None,
              folder: Path) -> Video:
    """A hosted-API download: the mp4 as served, decoded; the record says it is lossy (``exact: false``).

    Args:
        remote: the client.
        task_id: the task's id.
        result: its finished result.
        params: the request asked (None: read from the result's ``request_info``).
        folder: where the file is downloaded.

    Returns:
        The :class:`~wanlab.Video`, with notes where the service returned another size or frame count.

    Raises:
        DownloadError: the download failed or cannot be decoded.
        GenerationError: every frame is black (the service's safety checker may have blanked it).
        ParamError: ``params`` not given and the result's ``request_info`` does not say the request.
    """
    p = params if params is not None else _asked(result, task_id)
    url, kind = first_video(result, task_id)
    name = RUN_MP4 if kind == "mp4" else "video.gif"
    got = remote.download(remote.transport.url(url) if url.startswith("/") else url, folder / name)
    frames, rate = _frames(got.path, task_id)
    if not frames.any():
        raise GenerationError(f"task {task_id}: every frame the service returned is black; the service's safety "
                              "checker may have blanked it (enable_safety_checker); not stored")
    notes = []
    t, h, w, _ = frames.shape
    if (w, h) != (p.width, p.height):
        notes.append(f"the service returned {w}x{h} frames for a {p.width}x{p.height} request")
    if t != p.num_frames:
        notes.append(f"the service returned {t} frames; the request's num_frames is {p.num_frames}")
    entry = service_entry(remote, task_id, result)
    if entry["seed"] not in (None, "", "-1", str(p.seed)):
        notes.append(f"the service reports seed {entry['seed']}; the request sent {p.seed}")
    entry["downloaded"] = {name: {"bytes": got.size, "sha256": got.sha256, "video_type": kind}}
    entry["download_s"] = got.seconds
    record = {"params": p.to_dict(), "model": remote.identity.model_info, "settings": dict(remote.identity.settings),
              "accel": accel_dict(None), "loras": remote.describe_loras(p), "exact": False, "service": entry,
              "created": now_iso()}
    if notes:
        record["notes"] = notes
    return Video(frames, fps=rate or WAN_FPS, params=p, model=remote.identity.model_info,
                 timings=service_timings(entry["debug_info"]), record=record,
                 files={RUN_MP4: got.path} if kind == "mp4" else {})


def _frames(path: Path, task_id: str) -> tuple[Any, float]:
    from ..errors import WanlabError

    try:
        return read_frames(path)
    except (WanlabError, OSError, ValueError) as exc:
        raise DownloadError(f"task {task_id}: the downloaded {path.name} cannot be decoded ({exc})") from None


def _check_playable(path: Path, shape: tuple[int, ...], task_id: str) -> None:
    """The playable mp4 opens and holds a video stream of the frames' size (h264 pads odd sizes by one)."""
    import av

    try:
        with av.open(str(path)) as src:
            stream = src.streams.video[0]
            size = (stream.codec_context.height, stream.codec_context.width)
    except (av.error.FFmpegError, IndexError) as exc:
        raise DownloadError(f"task {task_id}: the downloaded {path.name} is not a readable video ({exc})") from None
    if size[0] - shape[1] not in (0, 1) or size[1] - shape[2] not in (0, 1):
        raise DownloadError(f"task {task_id}: the playable {path.name} is {size[1]}x{size[0]}, the frames "
                            f"{shape[2]}x{shape[1]}")


def _asked(result: Mapping[str, Any], task_id: str) -> Params:
    """The request of a task this client did not submit, from the service's ``debug_info.request_info``."""
    extra: Any = result.get("extra") if isinstance(result.get("extra"), Mapping) else {}
    info = (extra.get("debug_info") or {}).get("request_info") if isinstance(extra.get("debug_info"), Mapping) else None
    try:
        data = json.loads(info) if isinstance(info, str) else None
        fields = {k: v for k, v in (data or {}).items() if k in Params.field_names() and k != "loras"}
        return Params(**fields)
    except (ValueError, TypeError):
        raise ParamError("params", "given for a task this client did not submit (the service's request_info does "
                         "not say the request)", task_id) from None
