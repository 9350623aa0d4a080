# Held-out case (evalguard issue 27): shape of fastai/fastai PR #224 ("Change Model to eval mode
# before predict_array"): the Learner holds the model it was given; predict_array() ran it directly
# while the other predict helpers switched to eval first. Written anew.
import numpy as np
import torch

from fastai.model import fit, predict_with_targs


def to_np(t):
    return t.detach().cpu().numpy()


class Learner:
    def __init__(self, data, models, opt_fn=None, crit=None):
        self.data, self.models = data, models
        self.opt_fn = opt_fn or torch.optim.SGD
        self.crit = crit or torch.nn.functional.cross_entropy

    @property
    def model(self):
        return self.models.model

    def fit(self, lr, n_cycle):
        optimizer = self.opt_fn(self.model.parameters(), lr=lr)
        return fit(self.model, self.data, n_cycle, optimizer, self.crit)

    def predict_dl(self, dl):
        return predict_with_targs(self.model, dl)[0]

    def predict(self, is_test=False):
        return self.predict_dl(self.data.test_dl if is_test else self.data.val_dl)

    def predict_array(self, arr):
        return to_np(self.model(torch.as_tensor(np.asarray(arr))))
