# Devset (evalguard): bug shape from CalculatedContent/WeightWatcher issue #326 ("Update security
# issue in loading torch models": torch.load(state_dict_filename, map_location=...) without
# weights_only). The real setup.py lists no torch at all (also reported); this twin declares
# torch>=1.10 to exercise the version-aware path. Written anew for evalguard.
import torch


def read_state_dict(state_dict_filename):
    state_dict = torch.load(state_dict_filename, map_location=torch.device("cpu"), weights_only=True)
    return {name: tensor.numpy() for name, tensor in state_dict.items()}
