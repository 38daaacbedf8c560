"""A small text-embedding pipeline: a tokenizer in plain Python, a Transformer encoder and a
projection head (two torch modules, random weights from a fixed seed). The pipeline calls the
encoder with keyword arguments and gets a named tuple back, as Hugging Face pipelines do.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 1000
    max_length: int = 32
    dim: int = 64
    heads: int = 4
    layers: int = 2
    embedding_dim: int = 32


class Tokenizer:
    """Words hashed into the vocabulary; a batch is padded to its longest text (pad id 0)."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = [[1 + zlib.crc32(word.lower().encode()) % (self.config.vocab_size - 1) for word in text.split()]
               [: self.config.max_length] or [1] for text in texts]
        length = max(len(row) for row in ids)
        input_ids = torch.zeros(len(ids), length, dtype=torch.int64)
        attention_mask = torch.zeros(len(ids), length, dtype=torch.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            attention_mask[row, : len(tokens)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


class EncoderOutput(NamedTuple):
    last_hidden_state: torch.Tensor
    pooled: torch.Tensor


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dim // self.heads)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, -1e4)
        return self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, dim))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, heads)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.position = nn.Parameter(torch.randn(1, config.max_length, config.dim) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(config.dim, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        x = self.embed(input_ids) + self.position[:, : input_ids.shape[1]]
        for layer in self.layers:
            x = layer(x, attention_mask)
        x = self.norm(x)
        weights = attention_mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return EncoderOutput(last_hidden_state=x, pooled=pooled)


class ProjectionHead(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(config.dim, config.embedding_dim)
        self.norm = nn.LayerNorm(config.embedding_dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.norm(self.proj(pooled)), dim=-1)


class EmbeddingPipeline:
    """texts -> unit-length embeddings."""

    def __init__(self, config: EncoderConfig | None = None, seed: int = 0, device: str = "cpu") -> None:
        self.config = config or EncoderConfig()
        self.device = device
        torch.manual_seed(seed)
        self.tokenizer = Tokenizer(self.config)
        self.encoder = TextEncoder(self.config).eval().to(device)
        self.head = ProjectionHead(self.config).eval().to(device)

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        batch = {name: tensor.to(self.device) for name, tensor in
                 self.tokenizer([texts] if isinstance(texts, str) else list(texts)).items()}
        with torch.inference_mode():
            encoded = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            return self.head(encoded.pooled)


TEXTS = [
    "a photo of an astronaut riding a horse on mars",
    "navbuild builds every target once",
    "the quick brown fox",
    "content addressed stores share builds between machines",
    "hello",
    "deploy the fastest correct artifact",
]


def dataloader() -> list[tuple[int, tuple[list[str]]]]:
    """In-place optimization's dataloader: (batch size, sample) pairs; a sample holds the arguments."""
    batches = [TEXTS[0:1], TEXTS[1:3], TEXTS[3:6], TEXTS[4:5], TEXTS[0:4]]
    return [(len(batch), (batch,)) for batch in batches]
