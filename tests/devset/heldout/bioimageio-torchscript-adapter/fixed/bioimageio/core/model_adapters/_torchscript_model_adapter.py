# Held-out case (evalguard issue 27): shape of bioimage-io/core-bioimage-io-python PR #403 ("Make
# sure torchscript models run in eval mode"): the adapter loads a TorchScript file from a model
# package and runs it on every prediction; a script saved in training mode kept dropout/batch
# statistics live. Written anew.
import numpy as np
import torch

from bioimageio.core.model_adapters._model_adapter import ModelAdapter


class TorchscriptModelAdapter(ModelAdapter):
    def __init__(self, weights_file, devices=None):
        self.devices = [torch.device(d) for d in (devices or ["cpu"])]
        self._model = torch.jit.load(weights_file, map_location=self.devices[0])
        self._model.eval()

    def forward(self, *batch):
        with torch.no_grad():
            tensors = [torch.from_numpy(np.asarray(b)).to(self.devices[0]) for b in batch]
            result = self._model.forward(*tensors)
        if not isinstance(result, (tuple, list)):
            result = [result]
        return [r.cpu().numpy() for r in result]

    def unload(self):
        del self._model
