import torch

from ethos.model import GPT2LMNoBiasModel


def load_model_checkpoint(path, map_location="cpu"):
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    model = GPT2LMNoBiasModel(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    return model.to(map_location)
