# Shape of the bug in https://github.com/raharth/PyMatch/issues/17 (evalguard's own words):
# the learner has its own train()/eval() methods that flip a flag but never set the mode of
# the network it wraps, so predictions after learner.eval() still use Dropout.
import torch


class Learner:
    def __init__(self, model, optimizer, crit):
        self.model = model
        self.optimizer = optimizer
        self.crit = crit
        self.training = True

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def fit(self, loader):
        self.train()
        for x, y in loader:
            loss = self.crit(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def predict(self, loader):
        self.eval()
        with torch.no_grad():
            return [self.model(x) for x in loader]
