"""Benchmark models: ResNet-50 and BERT-base built from `transformers` configs (random weights,
no download), and a tiny MLP. Each factory returns the model in eval mode, as served."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn

# name -> (factory name, input shapes, input dtype)
MODELS = {
    "mlp": ("mlp", ["32x64"], "float32"),
    "resnet50": ("resnet50", ["2x3x224x224"], "float32"),
    "bert": ("bert", ["2x128"], "int64"),
    "bert4": ("bert4", ["2x128"], "int64"),
    "resnet_small": ("resnet_small", ["2x3x224x224"], "float32"),
    "gpt2": ("gpt2", ["2x128"], "int64"),
}


class BertLogits(nn.Module):
    """BERT-base taking token ids only, as a classifier would be served (ids < 2 keep it simple)."""

    def __init__(self, layers: int = 12):
        super().__init__()
        from transformers import BertConfig, BertModel

        # bert-base-uncased layout: 12 layers, hidden 768 (fewer layers for the quick bench)
        self.bert = BertModel(BertConfig(num_hidden_layers=layers))

    def forward(self, input_ids):
        return self.bert(input_ids=input_ids).last_hidden_state


class GPT2Logits(nn.Module):
    """GPT-2 small taking token ids only and returning the logits, as a scorer would be served:
    no key/value cache (``use_cache=False``; a cache object is not a tensor a tracer can return)."""

    def __init__(self):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        # gpt2 (small) layout: 12 layers, hidden 768, 50257-token vocabulary, tied embeddings
        self.gpt2 = GPT2LMHeadModel(GPT2Config(use_cache=False))

    def forward(self, input_ids):
        return self.gpt2(input_ids=input_ids, use_cache=False).logits


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10)).eval()


def trained_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm statistics as training leaves them (not the initial mean 0 / variance 1, which
    evalguard rightly reports as EG205): the benchmark models are clean."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            size = module.running_mean.shape
            module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
            module.running_var.copy_(1.0 + 0.5 * torch.rand(size, generator=generator))
            module.num_batches_tracked.fill_(1000)
    return model


def resnet50():
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    # the default config is the ResNet-50 layout
    return trained_statistics(ResNetForImageClassification(ResNetConfig())).eval()


def bert():
    torch.manual_seed(0)
    return BertLogits().eval()


def bert4():
    """BERT-base's width with 4 layers: the quick bench's transformer."""
    torch.manual_seed(0)
    return BertLogits(layers=4).eval()


def gpt2():
    torch.manual_seed(0)
    return GPT2Logits().eval()


def resnet_small():
    """A ResNet-18-like layout (basic blocks, [2, 2, 2, 2]) from the transformers config."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])
    return trained_statistics(ResNetForImageClassification(config)).eval()
