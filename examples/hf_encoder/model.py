"""A Hugging Face encoder: ``BertModel`` from a small ``BertConfig``, random weights drawn from a seed.

No download: the config is written here and the weights come from ``torch.manual_seed``, so the
example builds offline and the same everywhere. The model takes ``input_ids`` and
``attention_mask`` by name and returns a ``ModelOutput``; navbuild binds its keys
``last_hidden_state`` and ``pooler_output`` as the outputs.
"""
import torch
from transformers import BertConfig, BertModel

VOCAB, SEQ_LEN = 1000, 16
CONFIG = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=64)


def build_model() -> BertModel:
    torch.manual_seed(0)
    return BertModel(CONFIG).eval()


def make_samples():
    """Token ids with padding at the end of the shorter sequences, and the matching mask."""
    generator = torch.Generator().manual_seed(0)
    samples = []
    for batch in (1, 3):
        lengths = torch.randint(SEQ_LEN // 2, SEQ_LEN + 1, (batch,), generator=generator)
        attention_mask = (torch.arange(SEQ_LEN)[None, :] < lengths[:, None]).long()
        input_ids = torch.randint(1, VOCAB, (batch, SEQ_LEN), generator=generator) * attention_mask
        samples.append({"input_ids": input_ids, "attention_mask": attention_mask})
    return samples
