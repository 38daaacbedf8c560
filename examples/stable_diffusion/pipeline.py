"""A Stable Diffusion pipeline of diffusers' own classes built from configurations written here, with
random weights and a tokenizer made on the spot: nothing is downloaded.

``tiny_pipeline()`` stands for ``StableDiffusionPipeline.from_pretrained(...)`` in CI (it runs on a CPU
in seconds); ``sd21_pipeline()`` has Stable Diffusion 2.1's layer sizes (random weights), for
measuring on a GPU (benchmarks/diffusers_pipeline.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PROMPT = "a photo of an astronaut riding a horse on mars"


@dataclass(frozen=True)
class Sizes:
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    max_length: int
    unet_channels: tuple[int, ...]
    unet_heads: int | tuple[int, ...]
    unet_layers: int
    unet_sample: int
    vae_channels: tuple[int, ...]
    vae_layers: int
    norm_groups: int
    text_act: str = "quick_gelu"  # CLIP's; OpenCLIP ViT-H uses gelu


TINY = Sizes(text_hidden=16, text_intermediate=32, text_layers=1, text_heads=2, max_length=64,
             unet_channels=(8, 16), unet_heads=4, unet_layers=1, unet_sample=8, vae_channels=(8, 16),
             vae_layers=1, norm_groups=8)
# Stable Diffusion 2.1 (512 px): OpenCLIP ViT-H text encoder, the UNet and VAE of its model card
SD21 = Sizes(text_hidden=1024, text_intermediate=4096, text_layers=23, text_heads=16, max_length=77,
             unet_channels=(320, 640, 1280, 1280), unet_heads=(5, 10, 20, 20), unet_layers=2, unet_sample=64,
             vae_channels=(128, 256, 512, 512), vae_layers=2, norm_groups=32, text_act="gelu")


def tiny_tokenizer(max_length: int = 64):
    """A CLIPTokenizer whose vocabulary is the printable ASCII characters, alone and word-final, with no
    merges: every prompt tokenizes, one token per character (others become the unknown token)."""
    from transformers import CLIPTokenizer

    characters = [chr(code) for code in range(33, 127)]
    vocab = {token: index for index, token in enumerate(characters + [c + "</w>" for c in characters])}
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def build_pipeline(sizes: Sizes, seed: int = 0):
    """diffusers' StableDiffusionPipeline with these sizes, random weights (seeded), DPM-Solver++."""
    from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(sizes.max_length)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate,
        num_hidden_layers=sizes.text_layers, num_attention_heads=sizes.text_heads,
        max_position_embeddings=sizes.max_length, hidden_act=sizes.text_act, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()
    levels = len(sizes.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=sizes.unet_sample, in_channels=4, out_channels=4, layers_per_block=sizes.unet_layers,
        block_out_channels=sizes.unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        cross_attention_dim=sizes.text_hidden, attention_head_dim=sizes.unet_heads,
        use_linear_projection=levels > 2, norm_num_groups=sizes.norm_groups).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * len(sizes.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(sizes.vae_channels), block_out_channels=sizes.vae_channels,
        layers_per_block=sizes.vae_layers, latent_channels=4, norm_num_groups=sizes.norm_groups,
        sample_size=sizes.unet_sample * 2 ** (len(sizes.vae_channels) - 1)).eval()
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                            beta_start=0.00085, beta_end=0.012, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def tiny_pipeline(seed: int = 0):
    return build_pipeline(TINY, seed)


def sd21_pipeline(seed: int = 0):
    return build_pipeline(SD21, seed)
