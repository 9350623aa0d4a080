# Shape of the bug in https://github.com/frednam93/FDY-SED/issues/4 (evalguard's own words):
# the network lives in a configuration dict; the author forgot train_cfg["net"].eval()
# before running inference, so every run gave different results.
import torch

from nnet.crnn import CRNN


def get_configs():
    train_cfg = {"net": CRNN(), "device": "cpu"}
    train_cfg["net"].load_state_dict(torch.load("best.pt", weights_only=True))
    return train_cfg


def inference(train_cfg, loader):
    outputs = []
    train_cfg["net"].eval()
    with torch.no_grad():
        for feats in loader:
            outputs.append(train_cfg["net"](feats))
    return outputs


if __name__ == "__main__":
    cfg = get_configs()
    print(inference(cfg, []))
