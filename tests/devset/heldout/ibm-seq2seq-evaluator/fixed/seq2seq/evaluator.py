# Held-out case (evalguard issue 27): shape of IBM/pytorch-seq2seq PR #38 ("Set model in eval mode
# when inferencing"): an Evaluator object receives the model from the trainer as an argument of
# evaluate(); nothing there switched dropout off. Written anew.
import torch


class Evaluator:
    def __init__(self, loss, batch_size=64):
        self.loss = loss
        self.batch_size = batch_size

    def evaluate(self, model, data):
        model.eval()
        loss = self.loss
        loss.reset()
        match, total = 0, 0
        with torch.no_grad():
            for src, tgt in data:
                decoded = model(src, tgt)
                loss.eval_batch(decoded, tgt)
                match += (decoded.argmax(-1) == tgt).sum().item()
                total += tgt.numel()
        return loss.get_loss(), match / max(total, 1)
