"""Text models whose sequence length varies: four Hugging Face models from small configs (random
weights drawn from a seed, no download) and a small torch pooling model.

Every model takes ``input_ids`` and ``attention_mask`` (batch, sequence); the samples hold two
sequence lengths, and navbuild.toml declares the sequence axis ``seq`` with its bounds, so every
format, the Triton configuration and PyTriton serve lengths no sample had.
"""
import torch
from torch import nn

VOCAB, MAX_LENGTH = 100, 32
LENGTHS = (8, 13)  # one per sample: the samples' sequence lengths


def _tiny(config_class, **sizes):
    return config_class(vocab_size=VOCAB, max_position_embeddings=MAX_LENGTH, **sizes)


def bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(_tiny(BertConfig, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32)).eval()


def distilbert():
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    return DistilBertModel(_tiny(DistilBertConfig, dim=16, n_layers=1, n_heads=2, hidden_dim=32)).eval()


def clip_text():
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    return CLIPTextModel(_tiny(CLIPTextConfig, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, bos_token_id=VOCAB - 2, eos_token_id=VOCAB - 1,
                               pad_token_id=0)).eval()


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=MAX_LENGTH, n_embd=16, n_layer=1, n_head=2, use_cache=False,
                        bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    return GPT2LMHeadModel(config).eval()


class MaskedMeanPooling(nn.Module):
    """Token embeddings averaged over the positions the mask keeps, then projected."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.project = nn.Linear(16, 8)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        summed = (self.embed(input_ids) * mask).sum(dim=1)
        return self.project(summed / mask.sum(dim=1).clamp(min=1.0))


def pooling():
    torch.manual_seed(0)
    return MaskedMeanPooling().eval()


def make_samples():
    """One sample per length (batch 1, then 2), the second with padding at the end of its first row."""
    generator = torch.Generator().manual_seed(0)
    samples = []
    for batch, length in zip((1, 2), LENGTHS):
        attention_mask = torch.ones(batch, length, dtype=torch.long)
        if batch > 1:
            attention_mask[0, length - 3:] = 0
        input_ids = torch.randint(1, VOCAB - 2, (batch, length), generator=generator) * attention_mask
        samples.append({"input_ids": input_ids, "attention_mask": attention_mask})
    return samples
