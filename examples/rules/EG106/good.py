"""EG106 good: every model that serves predictions is put in eval mode first.

Audited as source (never run). Shows the places the check looks for eval(): the inference
function itself, its caller, the loader, __init__/initialize, module level, a helper.
"""
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

AUDIT = "source"


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.body(x))


def load_model(path: str) -> Classifier:
    model = Classifier()
    model.load_state_dict(torch.load(path, map_location="cpu"))
    return model.eval()                              # eval where it is loaded


def predict(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(batch).softmax(-1)


def main() -> None:
    model = load_model("classifier.pt")
    print(predict(model, torch.randn(4, 8)))


def evaluate(model: nn.Module, batches) -> list:
    model.eval()                                     # eval in the inference function
    with torch.no_grad():
        return [model(b) for b in batches]


def recalibrate_batchnorm(model: nn.Module, batches) -> None:
    # Training mode on purpose: refresh BatchNorm statistics without gradients.
    model.train()
    with torch.no_grad():
        for b in batches:
            model(b)


class TorchScriptHandler:
    def initialize(self, model_path: str) -> None:
        self.model = torch.jit.load(model_path)
        self.model.eval()                            # eval where the attribute is set

    def handle(self, batch: torch.Tensor) -> list:
        return self.model(batch).argmax(-1).tolist()


class TextHandler:
    def __init__(self, name: str) -> None:
        # from_pretrained() returns the model in eval mode already.
        self.model = AutoModelForSequenceClassification.from_pretrained(name)

    @torch.inference_mode()
    def predict(self, **encoded) -> torch.Tensor:
        return self.model(**encoded).logits


def freeze(module: nn.Module) -> nn.Module:
    module.train(False)                              # same as eval()
    return module


encoder = Classifier()
encoder.load_state_dict(torch.load("encoder.pt", map_location="cpu"))
freeze(encoder)

with torch.inference_mode():
    embeddings = encoder(torch.randn(16, 8))
