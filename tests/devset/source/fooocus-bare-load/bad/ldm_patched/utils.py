# Devset (evalguard): bug shape from lllyasviel/Fooocus PR #3427 ("torch.load without weights_only
# parameter is unsafe", found with TorchFix): checkpoint loading with the default weights_only in a
# project whose pinned requirements leave torch open. Written anew for evalguard.
import safetensors.torch
import torch


def load_torch_file(ckpt, device=None):
    if ckpt.lower().endswith(".safetensors"):
        return safetensors.torch.load_file(ckpt, device=str(device or "cpu"))
    pl_sd = torch.load(ckpt, map_location=device or torch.device("cpu"))
    return pl_sd.get("state_dict", pl_sd)
