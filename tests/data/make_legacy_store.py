"""Write ``tests/data/legacy_store``: a small run store made by wanlab at commit 9403802 (before the
backend seam), so tests can check that later code reads it back unchanged: the same run keys,
the same ``Store.df()`` rows and the same task results.

It holds four tiny runs (plain, with a LoRA, with an acceleration setting and its latents, and one
made by a task), one recorded failure (a point whose LoRA file is missing, under its stand-in key)
and the task's finished result; ``legacy_expected.json`` lists (with the ``toy`` model's identity and
one key) what that code computed for each.

Run once, from the repository root, with the code of that commit::

    python tests/data/make_legacy_store.py
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "legacy_store"
LORA = HERE / "legacy_lora.safetensors"
BASE = dict(prompt="a paper boat drifting down a rain gutter", width=32, height=32, num_frames=5, steps=2,
            guidance_scale=3.0, flow_shift=3.0)


def main() -> None:
    import torch
    from safetensors.torch import save_file

    import wanlab
    from wanlab.store import Store
    from wanlab.sweep import Sweep

    torch.set_num_threads(1)
    if OUT.exists():
        shutil.rmtree(OUT)
    pipe = wanlab.load("tiny", progress=False)

    # a small diffusers-format LoRA on the tiny transformer's attention (rank 2, fixed seed)
    gen = torch.Generator().manual_seed(3)
    tensors = {}
    for b, _ in enumerate(pipe.diffusers.transformer.blocks):
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            layer = pipe.diffusers.transformer.get_submodule(f"blocks.{b}.attn1.{proj}")
            prefix = f"transformer.blocks.{b}.attn1.{proj}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(2, layer.in_features, generator=gen)
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(layer.out_features, 2, generator=gen)
    save_file(tensors, str(LORA))

    store = Store(OUT)
    lora_rel = "tests/data/legacy_lora.safetensors"
    sweep = Sweep(base=BASE, name="legacy", points=[
        {"seed": 1},
        {"seed": 2, "loras": [{"path": lora_rel, "scale": 0.7}]},
        {"seed": 3, "accel": "fbc"},
        {"seed": 4, "loras": [{"path": "tests/data/missing_lora.safetensors", "scale": 1.0}]},
    ])
    result = sweep.run(pipe, store, metrics=True, progress=False)
    task_id = pipe.submit(wanlab.Params(**BASE, seed=5), store=store)
    task = pipe.wait(task_id, timeout=120)

    df = store.df()
    expected = {
        "commit": "9403802",
        "sweep": {"points": [p.to_dict() for p in sweep.points(pipe)], "keys": list(result.df["key"]),
                  "status": list(result.df["status"])},
        "failures": sorted(store.failures()),
        "task_id": task_id,
        "task_key": task["extra"]["run_key"],
        "task_result": task,
        "df_columns": list(df.columns),
        "df": json.loads(df.drop(columns=["path", "mp4"]).to_json(orient="records")),
        "fingerprint": pipe.fingerprint,
        "settings": pipe.generation_settings(),
    }
    toy = wanlab.load("toy", progress=False)  # the demo's model: its runs' keys must not change either
    toy_params = toy.params(prompt="a red square moving right quickly", seed=1)
    expected["toy"] = {"fingerprint": toy.fingerprint, "settings": toy.generation_settings(),
                       "native": toy.native, "params": toy_params.to_dict(), "key": store.key_for(toy, toy_params)}
    (OUT / "index.sqlite").unlink(missing_ok=True)  # a cache: the reading code rebuilds it
    (OUT / ".lock").unlink(missing_ok=True)
    (HERE / "legacy_expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(json.dumps({"keys": expected["sweep"]["keys"], "status": expected["sweep"]["status"],
                      "task": task["task"]["status"]}, indent=1))


if __name__ == "__main__":
    main()
