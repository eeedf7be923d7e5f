"""Looking at recorded probes in a notebook: :class:`ProbeViewer`."""
from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..errors import ProbeError
from ..player import auto_zoom, encode_frame
from .viewer import _enlarge


def _png(frame: np.ndarray, zoom: int) -> bytes:
    return encode_frame(_enlarge(frame, zoom), "png")


def _figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


class ProbeViewer(widgets.VBox):
    """A video's probes, one tab each.

    The trajectory (a step slider x a frame slider over the previews, beside the final frame), the
    attention (a word picker and a frame slider, the word's map over the frames) and the features
    (the change heatmap with skipped calls marked).

    Args:
        video: a :class:`wanlab.Video` with probes (``generate(probes=...)``, ``Video.load``, ``run.video()``).
        decoder: a pipeline to show VAE-decoded previews instead of the latent-to-RGB projection.

    Raises:
        ProbeError: a video recorded without probes.

    Example:
        >>> video = pipe.generate(prompt="a red square moving right quickly", probes=["trajectory"])  # doctest: +SKIP
        >>> ProbeViewer(video)  # doctest: +SKIP
    """

    def __init__(self, video: Any, *, decoder: Any = None) -> None:
        if not video.probes:
            raise ProbeError("video: must be recorded with probes (generate(..., probes=[...])); this one has none",
                             "video")
        self.video = video
        self.decoder = decoder
        self.zoom = auto_zoom(video.height)
        last = video.num_frames - 1
        self.frame = widgets.IntSlider(value=0, min=0, max=last, description="frame", continuous_update=True)
        tabs, titles = [], []
        self.trajectory = self.attention = None
        if "trajectory" in video.probes:
            tabs.append(self._trajectory_tab())
            titles.append("trajectory")
        if "attention" in video.probes:
            tabs.append(self._attention_tab())
            titles.append("attention")
        if "features" in video.probes:
            tabs.append(self._features_tab())
            titles.append("features")
        self.tabs = widgets.Tab(children=tabs, titles=titles)
        super().__init__([self.tabs, self.frame])
        self.frame.observe(lambda _change: self._refresh(), names="value")
        self._refresh()

    # --- tabs ---------------------------------------------------------------------------------------
    def _trajectory_tab(self) -> widgets.Widget:
        traj = self.video.probes["trajectory"]
        self.step = widgets.IntSlider(value=traj.steps - 1, min=0, max=traj.steps - 1, description="step")
        self._previews: dict[int, np.ndarray] = {}
        self.preview_image = widgets.Image(format="png")
        self.final_image = widgets.Image(format="png")
        self.trajectory_caption = widgets.HTML()
        self.step.observe(lambda _change: self._refresh(), names="value")
        images = widgets.HBox([widgets.VBox([widgets.HTML("prediction at this step"), self.preview_image]),
                               widgets.VBox([widgets.HTML("final frame"), self.final_image])])
        return widgets.VBox([self.step, images, self.trajectory_caption])

    def _attention_tab(self) -> widgets.Widget:
        attention = self.video.probes["attention"]
        self.word = widgets.Dropdown(options=attention.words, value=attention.words[0], description="word")
        self._maps: dict[str, np.ndarray] = {}
        self.attention_image = widgets.Image(format="png")
        self.word.observe(lambda _change: self._refresh(), names="value")
        return widgets.VBox([self.word, self.attention_image])

    def _features_tab(self) -> widgets.Widget:
        from ..probes.plots import feature_heatmap

        features = self.video.probes["features"]
        return widgets.Image(value=_figure_png(feature_heatmap(features)), format="png")

    # --- what the sliders show ------------------------------------------------------------------------
    def preview(self, step: int) -> np.ndarray:
        """The trajectory's preview at ``step`` (cached per step).

        Args:
            step: A recorded denoising step.

        Returns:
            uint8 (T, H, W, 3) frames: the prediction of the final video at that step.
        """
        if step not in self._previews:
            self._previews[step] = self.video.probes["trajectory"].preview(step, decoder=self.decoder)
        return self._previews[step]

    def attention_frame(self, word: str, index: int) -> np.ndarray:
        """Frame ``index`` with ``word``'s attention map over it.

        Args:
            word: A word of the prompt that was recorded.
            index: The frame.

        Returns:
            uint8 (H, W, 3) frame with the map blended over it.

        Raises:
            ProbeError: A word the prompt lacks.
        """
        from ..probes.plots import overlay

        if word not in self._maps:
            self._maps[word] = self.video.probes["attention"].map(word)
        return overlay(self.video.frames[index], self._maps[word][index])

    def _refresh(self) -> None:
        index = int(self.frame.value)
        if "trajectory" in self.video.probes:
            traj = self.video.probes["trajectory"]
            step = int(self.step.value)
            self.preview_image.value = _png(self.preview(step)[index], self.zoom)
            self.final_image.value = _png(self.video.frames[index], self.zoom)
            self.trajectory_caption.value = (f"step {step} / {traj.steps - 1} · distance to the last prediction "
                                             f"{traj.distance[step]:.3f} · frame {index}")
        if "attention" in self.video.probes:
            self.attention_image.value = _png(self.attention_frame(self.word.value, index), self.zoom)
