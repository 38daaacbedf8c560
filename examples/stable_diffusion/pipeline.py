"""A Stable Diffusion pipeline of diffusers' own classes, built from tiny configurations with random
weights and a tokenizer written on the spot: nothing is downloaded, and it runs on a CPU in seconds.

``tiny_pipeline()`` has the shape of ``StableDiffusionPipeline.from_pretrained(...)``; ``sd21_pipeline()``
has Stable Diffusion 2.1's layer sizes (random weights) for measuring on a GPU.
"""
from __future__ import annotations

import torch

PROMPT = "a photo of an astronaut riding a horse on mars"


def tiny_tokenizer(max_length: int = 64):
    """A CLIPTokenizer whose vocabulary is the printable ASCII characters, alone and word-final, with no
    merges: every prompt tokenizes, one token per character (others become the unknown token)."""
    from transformers import CLIPTokenizer

    characters = [chr(code) for code in range(33, 127)]
    vocab = {token: index for index, token in enumerate(characters + [c + "</w>" for c in characters])}
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_pipeline(seed: int = 0, steps_scheduler: str = "dpm"):
    from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)).eval()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
        attention_head_dim=4, norm_num_groups=8).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16),
        latent_channels=4, norm_num_groups=8, sample_size=16).eval()
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                            beta_start=0.00085, beta_end=0.012, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
