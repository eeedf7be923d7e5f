"""Models known without loading them: built-ins, model cards, folders and hub ids give the identity
that loading them gives, and a model whose weights are unreadable still has one."""
from __future__ import annotations

import json
import shutil

import pytest

import wanlab
from wanlab import LoadError
from wanlab.models.registry import TINY_FINGERPRINT, TOY_FOLDER, builtins


def test_tiny_builds_the_weights_its_recorded_fingerprint_names(pipe):
    assert pipe.fingerprint == TINY_FINGERPRINT == wanlab.identity("tiny").fingerprint
    assert pipe.identity.to_dict() == wanlab.identity("tiny").to_dict()


def test_toy_by_name_and_by_folder_is_one_model_with_one_identity():
    by_name, by_path = wanlab.identity("toy"), wanlab.identity(TOY_FOLDER)
    assert by_name == by_path and by_name.model_id == "toy" and by_name.source == "builtin"
    assert dict(by_name.native) == dict(builtins()["toy"].native) and by_name.max_sequence_length == 16
    loaded = wanlab.load(TOY_FOLDER, progress=False)
    assert loaded.identity.to_dict() == by_name.to_dict()
    assert loaded.params(prompt="a red square moving right quickly").size == (64, 64)


def test_a_folder_is_identified_by_its_files_without_loading_them(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "tiny")
    expected = wanlab.load(folder, progress=False).identity
    assert wanlab.identity(folder) == expected and expected.source == "folder"
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights at all")
    seen = wanlab.identity(broken)  # hashes files, loads nothing: unreadable weights do not matter
    assert seen.fingerprint != expected.fingerprint and seen.settings == expected.settings
    with pytest.raises(LoadError, match="could not load the Wan pipeline"):
        wanlab.load(broken, progress=False)
    sweep = wanlab.Sweep(base={"prompt": "a fox", "width": 32, "height": 32, "num_frames": 5, "steps": 2},
                         grid={"seed": [1, 2]}, name="broken")
    table = sweep.result(broken, tmp_path / "runs").df  # a dry run needs no weights either
    assert list(table["status"]) == ["pending", "pending"] and table["key"].is_unique


def test_a_folder_with_a_model_card_declares_its_native_settings(pipe, tmp_path):
    from wanlab.models.registry import Card, write_card

    folder = pipe.save_pretrained(tmp_path / "carded")
    write_card(folder, Card(name="mine", native={"width": 48, "height": 48, "num_frames": 9}, max_sequence_length=32))
    seen = wanlab.identity(folder)
    assert dict(seen.native) == {"width": 48, "height": 48, "num_frames": 9} and seen.max_sequence_length == 32
    assert seen.source == "folder"  # no SHA256SUMS: identified by its files, not by the card's word
    (folder / "wanlab.json").write_text("{not json")
    with pytest.raises(LoadError, match="wanlab.json: not a readable wanlab model card"):
        wanlab.identity(folder)


def test_an_uncached_hub_id_fails_at_once_with_what_to_do():
    with pytest.raises(LoadError) as info:
        wanlab.identity("Wan-AI/Wan2.1-T2V-14B-Diffusers")
    text = str(info.value)
    assert "not in the local Hugging Face cache" in text and "huggingface-cli download" in text and "HF_HOME" in text


def test_an_edited_toy_checkpoint_is_not_trusted_by_its_card(tmp_path):
    copy = tmp_path / "toy"
    shutil.copytree(TOY_FOLDER, copy)
    assert wanlab.identity(copy).fingerprint == wanlab.identity("toy").fingerprint  # a copy is the toy
    config = json.loads((copy / "vae" / "config.json").read_text())
    config["latents_std"] = [1.0] * len(config["latents_std"])
    (copy / "vae" / "config.json").write_text(json.dumps(config))
    edited = wanlab.identity(copy)
    assert edited.fingerprint != wanlab.identity("toy").fingerprint and edited.source == "folder"
