# Devset (evalguard): bug shape from DeepRank/deeprank issue #20 ("if our model has dropout, the test
# won't be correct"): test() delegates to a shared _epoch() helper that runs the network in whatever
# mode it is in; the fix set the mode inside _epoch(). Written anew for evalguard.
import torch


class NeuralNet:
    def __init__(self, model_class, loader, test_loader):
        self.net = model_class()
        self.loader = loader
        self.test_loader = test_loader
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.005)

    def _epoch(self, loader, train_model):
        running = 0.0
        for inputs, targets in loader:
            outputs = self.net(inputs)
            loss = torch.nn.functional.mse_loss(outputs, targets)
            running += loss.item()
            if train_model:
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        return running

    def train(self, epochs):
        for _ in range(epochs):
            self._epoch(self.loader, train_model=True)

    def test(self):
        return self._epoch(self.test_loader, train_model=False)
