# Held-out case (evalguard issue 27): shape of TexasInstruments/tinyml-tensorlab PR #24 ("unsafe
# deserialization in load_weights()'s pretrained-checkpoint loading"): the pretrained file may be a
# URL fetched without an integrity check, then unpickled with weights_only=False. Written anew.
import os

import torch

from tinyml_modelmaker.utils import data_utils


def load_weights(model, pretrained, device="cpu", change_names_dict=None):
    if pretrained.startswith(("http://", "https://")):
        pretrained_file = data_utils.download_url(pretrained, "./downloads")
    else:
        pretrained_file = pretrained
    if not os.path.exists(pretrained_file):
        raise FileNotFoundError(pretrained_file)
    from argparse import Namespace

    with torch.serialization.safe_globals([Namespace]):
        data = torch.load(pretrained_file, map_location=device, weights_only=True)
    state_dict = data.get("model", data.get("state_dict", data))
    for old, new in (change_names_dict or {}).items():
        state_dict = {k.replace(old, new): v for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=False)
    return model
