"""EG106 bad: serving code that runs a model without ever calling model.eval().

Audited as source (never run). torch.no_grad()/inference_mode() only switch off autograd;
Dropout keeps dropping and BatchNorm keeps using (and updating) batch statistics.
"""
import torch
from torch import nn

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
    return model


def predict(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(batch).softmax(-1)  # [EG106]


def main() -> None:
    model = load_model("classifier.pt")
    print(predict(model, torch.randn(4, 8)))


class TorchScriptHandler:
    """A TorchServe-style handler: initialize() loads, handle() serves."""

    def initialize(self, model_path: str) -> None:
        self.model = torch.jit.load(model_path)

    def handle(self, batch: torch.Tensor) -> list:
        return self.model(batch).argmax(-1).tolist()  # [EG106]


encoder = Classifier()
encoder.load_state_dict(torch.load("encoder.pt", map_location="cpu"))

with torch.inference_mode():
    embeddings = encoder(torch.randn(16, 8))  # [EG106]
