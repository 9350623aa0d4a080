# Held-out case (evalguard issue 27): shape of borchero/pyblaze issue #6 ("Potentially missing eval
# mode in pyblaze.nn.engine.base.predict method"; the fixed twin is the fix the issue asks for): the
# Engine (not a Module) wraps the model it is given; evaluate() switches to eval, predict() hands each
# batch and the predict_batch method to a module-level worker function, and predict_batch runs the
# model through a forward() utility. Written anew.
import torch

from pyblaze.nn.engine._utils import forward


def _prediction_worker_func(item, predict_func, kwargs):
    with torch.no_grad():
        return predict_func(item, **kwargs)


class Engine:
    def __init__(self, model):
        self.model = model

    def train(self, train_data, optimizer, epochs=1, eval_data=None):
        for _ in range(epochs):
            self.model.train()
            for batch in train_data:
                loss = self.train_batch(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if eval_data is not None:
                self.evaluate(eval_data)

    def evaluate(self, data):
        self.model.eval()
        with torch.no_grad():
            return [self.eval_batch(batch) for batch in data]

    def predict(self, data, **kwargs):
        outputs = []
        for batch in data:
            outputs.append(_prediction_worker_func(batch, self.predict_batch, kwargs))
        return torch.cat(outputs)

    def train_batch(self, batch):
        raise NotImplementedError

    def eval_batch(self, batch):
        raise NotImplementedError

    def predict_batch(self, data, **kwargs):
        return forward(self.model, data)
