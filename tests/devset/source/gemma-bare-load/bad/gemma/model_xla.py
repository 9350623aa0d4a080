# Devset (evalguard): bug shape from google/gemma_pytorch issue #1 ("torch.load without weights_only
# parameter is unsafe"): the project's requirements do not pin torch at all, so any torch -- and its
# pickle-everything default before 2.6 -- may run this. Written anew for evalguard.
import torch


class GemmaForCausalLM(torch.nn.Module):
    def load_weights(self, model_path: str):
        checkpoint = torch.load(model_path)
        self.load_state_dict(checkpoint["model_state_dict"], strict=False)
