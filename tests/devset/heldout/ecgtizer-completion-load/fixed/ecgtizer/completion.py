# Held-out case (evalguard issue 27): shape of UMMISCO/ecgtizer issue #5 ("torch.load without
# weights_only=True allows arbitrary code execution", fixed in 0b6fabb): the lead-completion model is
# rebuilt and its weights read from a path the caller may pass in. Written anew.
import os

import torch

from ecgtizer.models import CompletionUNet

DEFAULT_MODEL = os.path.join(os.path.dirname(__file__), "model", "Model_Completion.pth")


def load_completion_model(path=None, device="cpu"):
    path = path or DEFAULT_MODEL
    model = CompletionUNet()
    model.load_state_dict(torch.load(path, map_location=torch.device(device), weights_only=True))
    model.eval()
    return model


def complete_leads(signal, path=None, device="cpu"):
    model = load_completion_model(path, device)
    with torch.no_grad():
        return model(torch.as_tensor(signal, dtype=torch.float32)[None]).squeeze(0).numpy()
