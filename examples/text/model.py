"""A small Transformer-encoder-style classifier in plain torch (random weights in weights.pt)."""
import math
from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).with_name("weights.pt")
VOCAB, SEQ_LEN, DIM, HEADS, LAYERS, CLASSES = 512, 16, 64, 4, 2, 4


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, seq, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dim // self.heads), dim=-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(batch, seq, dim))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.position = nn.Parameter(torch.zeros(1, SEQ_LEN, DIM))
        self.layers = nn.Sequential(*[EncoderLayer(DIM, HEADS) for _ in range(LAYERS)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.embed(tokens) + self.position)
        return self.head(self.norm(x).mean(dim=1))


def build_model() -> nn.Module:
    model = TinyEncoder()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def make_samples():
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, VOCAB, (batch, SEQ_LEN), generator=generator) for batch in (1, 3)]


def write_random_weights(seed: int = 0) -> None:
    torch.manual_seed(seed)
    model = TinyEncoder()
    nn.init.normal_(model.position, std=0.02)
    torch.save(model.state_dict(), WEIGHTS)


if __name__ == "__main__":
    write_random_weights()
