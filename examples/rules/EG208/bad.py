"""EG208 bad: the output layer was renamed (``fc`` -> ``head``) after the checkpoint was saved.

A checkpoint example: ``build_checkpoint(path)`` saves the weights of the model as it was
trained; the audit is ``evalguard check ckpt.pt --model examples/rules/EG208/bad.py:build_model``.
``load_state_dict(..., strict=False)`` would accept this without a word: ``head`` keeps its random
initial values and ``fc`` in the file is dropped, so the classifier answers at random.
"""
import torch
from torch import nn

AUDIT = "checkpoint"
INPUT_SHAPES = ("2x8",)
EXPECTED_RULES = ("EG208",)


class Classifier(nn.Module):
    def __init__(self, last: str = "head") -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        setattr(self, last, nn.Linear(16, 3))
        self.last = last

    def forward(self, x):
        return getattr(self, self.last)(self.body(x))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Classifier().eval()


def build_checkpoint(path) -> None:
    torch.manual_seed(1)
    trained = Classifier(last="fc")      # the layer's name when the model was trained
    torch.save({"epoch": 10, "model": trained.state_dict()}, path)
