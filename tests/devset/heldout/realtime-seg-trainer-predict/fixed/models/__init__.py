from models.bisenet import BiSeNet
from models.fastscnn import FastSCNN

_REGISTRY = {"bisenet": BiSeNet, "fastscnn": FastSCNN}


def get_model(config):
    return _REGISTRY[config.model](num_class=config.num_class)
