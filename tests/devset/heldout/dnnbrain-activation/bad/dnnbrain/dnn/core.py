# Held-out case (evalguard issue 27): shape of BNUCNL/dnnbrain PR #72 ("add model.eval() to ban the
# dropout layer"): a DNN wrapper (not an nn.Module) holds a torchvision network and computes layer
# activations with forward hooks; dropout stayed on during the extraction. Written anew.
import numpy as np
import torch
from torchvision import models


class DNN:
    def __init__(self, net="alexnet", weights_path=None):
        self.model = getattr(models, net)()
        if weights_path is not None:
            self.model.load_state_dict(torch.load(weights_path, weights_only=True))
        self.layer2loc = {"conv5": ("features", "10"), "fc2": ("classifier", "5")}

    def _module(self, layer):
        module = self.model
        for name in self.layer2loc[layer]:
            module = module._modules[name]
        return module

    def compute_activation(self, stimuli, layers):
        acts = {layer: [] for layer in layers}
        handles = [self._module(layer).register_forward_hook(
            lambda _m, _i, out, layer=layer: acts[layer].append(out.detach().numpy().copy()))
            for layer in layers]
        for batch in torch.split(torch.as_tensor(stimuli, dtype=torch.float32), 32):
            self.model(batch)
        for handle in handles:
            handle.remove()
        return {layer: np.concatenate(values) for layer, values in acts.items()}
