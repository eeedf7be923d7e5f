"""LoRA loading: what wanlab's conversion and post-load check cost next to diffusers' own loader.

A Wan 2.1 1.3B-width transformer (dim 1536, ffn 8960, text_dim 4096; --blocks of its 30 blocks,
random weights) and a rank --rank LoRA on every Linear of every block, written as a diffusers
file and as a musubi-tuner file. Measured side by side in this one process, interleaved, best of
--repeats: diffusers ``load_lora_weights`` on the diffusers file, and wanlab's ``LoRASet.apply``
(read + convert + load + verify) on each file, with the stages of wanlab's path broken out.
Run: python benchmarks/bench_lora.py [--blocks 4] [--rank 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path


def build(blocks: int):
    import torch
    from diffusers import WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(num_attention_heads=12, attention_head_dim=128, in_channels=16,
                                        out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                                        num_layers=blocks).eval()
    return WanPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=None, scheduler=None)


def write_files(pipe, folder: Path, rank: int) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    original = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
                "attn1.to_out.0": "self_attn.o", "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
                "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o", "ffn.net.0.proj": "ffn.0",
                "ffn.net.2": "ffn.2"}
    g = torch.Generator().manual_seed(1)
    diffusers, musubi = {}, {}
    for b, _ in enumerate(pipe.transformer.blocks):
        for name, orig in original.items():
            layer = pipe.transformer.get_submodule(f"blocks.{b}.{name}")
            down = (torch.randn(rank, layer.in_features, generator=g) * 0.01).to(torch.bfloat16)
            up = (torch.randn(layer.out_features, rank, generator=g) * 0.01).to(torch.bfloat16)
            diffusers[f"transformer.blocks.{b}.{name}.lora_A.weight"] = down
            diffusers[f"transformer.blocks.{b}.{name}.lora_B.weight"] = up
            stem = f"lora_unet_blocks_{b}_{orig.replace('.', '_')}"
            musubi.update({f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up,
                           f"{stem}.alpha": torch.tensor(float(rank))})
    paths = {"diffusers": folder / "diffusers.safetensors", "musubi": folder / "musubi.safetensors"}
    save_file(diffusers, str(paths["diffusers"]))
    save_file(musubi, str(paths["musubi"]))
    return paths


def same_adapters(pipe, paths: dict[str, Path], folder: Path) -> bool:
    """wanlab's adapters (from either file) hold the very weights diffusers loads from the diffusers file."""
    import torch
    from peft.tuners.lora import LoraLayer

    from wanlab.lora import LoRASet
    from wanlab.params import LoRA

    pipe.load_lora_weights(str(folder), weight_name=paths["diffusers"].name, adapter_name="direct")
    ours = {}
    for kind in ("diffusers", "musubi"):
        loras = LoRASet(pipe)
        loras.apply([LoRA(str(paths[kind]), 1.0)])
        ours[kind] = loras
    same = True
    for module in pipe.transformer.modules():
        if isinstance(module, LoraLayer) and "direct" in module.lora_A:
            names = [n for n in module.lora_A if n != "direct"]
            for name in names:
                same &= torch.equal(module.lora_A[name].weight, module.lora_A["direct"].weight)
                same &= torch.equal(module.lora_B[name].weight, module.lora_B["direct"].weight)
                same &= module.scaling[name] == module.scaling["direct"] == 1.0
    pipe.unload_lora_weights()
    return bool(same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from wanlab.lora import LoRASet, convert, read
    from wanlab.lora.adapters import check_loaded
    from wanlab.params import LoRA

    torch.set_num_threads(1)
    pipe = build(args.blocks)
    folder = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    paths = write_files(pipe, folder, args.rank)
    loras = LoRASet(pipe)
    layout = loras.layout()

    def diffusers_load() -> None:
        pipe.load_lora_weights(str(folder), weight_name=paths["diffusers"].name, adapter_name="direct")
        pipe.delete_adapters("direct")

    def wanlab_apply(kind: str) -> None:
        fresh = LoRASet(pipe)
        fresh.apply([LoRA(str(paths[kind]), 1.0)])
        fresh.unload()

    stages: dict[str, list[float]] = {"read": [], "convert": [], "load": [], "verify": []}

    def wanlab_stages() -> None:
        t0 = time.perf_counter()
        tensors, config = read(paths["musubi"], "musubi")
        t1 = time.perf_counter()
        converted = convert(tensors, layout, name="musubi", config=config)
        t2 = time.perf_counter()
        pipe.load_lora_weights(converted.state_dict, adapter_name="staged")
        t3 = time.perf_counter()
        check_loaded(pipe.transformer, "staged", converted, "musubi")
        t4 = time.perf_counter()
        pipe.delete_adapters("staged")
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[key].append(value)

    runs = {"diffusers load_lora_weights (diffusers file)": diffusers_load,
            "wanlab apply (diffusers file)": lambda: wanlab_apply("diffusers"),
            "wanlab apply (musubi file)": lambda: wanlab_apply("musubi")}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        wanlab_stages()

    same = same_adapters(pipe, paths, folder)
    size_mb = paths["diffusers"].stat().st_size / 1e6
    base = min(times["diffusers load_lora_weights (diffusers file)"])
    print(f"LoRA loading, {args.blocks} blocks at 1.3B width, rank {args.rank} on {10 * args.blocks} Linears "
          f"({size_mb:.1f} MB bf16); {platform.machine()} CPU, 1 torch thread, best of {args.repeats}")
    print()
    print("| path | seconds | vs diffusers |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.3f} | {min(values) / base:.2f}x |")
    for name, values in stages.items():
        print(f"| wanlab stage: {name} | {min(values):.3f} | {min(values) / base:.2f}x |")
    print()
    print(f"same adapter weights as diffusers' loader (diffusers and musubi files): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
