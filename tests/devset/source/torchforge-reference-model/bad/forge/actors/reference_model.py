# Shape of the bug fixed in https://github.com/meta-pytorch/torchforge/pull/235 (evalguard's own
# words): the RL reference-model actor takes its network out of a training engine after loading
# the checkpoint and runs it under inference_mode, but never puts it in eval mode.
import torch
from titan.engine import Engine


class ReferenceActor:
    def __init__(self, config):
        self.config = config
        self.step = 0

    def setup(self):
        self.engine = Engine(self.config)
        self.engine.checkpointer.load()
        self.model = self.engine.model_parts[0]

    def forward(self, input_ids):
        with torch.inference_mode():
            logits = self.model(input_ids)
        self.step += 1
        return torch.log_softmax(logits, dim=-1)
