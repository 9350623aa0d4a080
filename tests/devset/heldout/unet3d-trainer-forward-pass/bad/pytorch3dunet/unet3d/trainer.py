# Held-out case (evalguard issue 27): shape of wolny/pytorch-3dunet issue #53 ("Need to set the model
# to 'eval' mode when assessing the validation data", fixed in the trainer): the trainer receives the
# model in __init__; validate() and train() share the _forward_pass() helper, and nothing put the
# model in eval mode before validating. Written anew.
import torch


class UNet3DTrainer:
    def __init__(self, model, optimizer, loss_criterion, eval_criterion, loaders, max_num_epochs=100,
                 validate_after_iters=100):
        self.model = model
        self.optimizer = optimizer
        self.loss_criterion = loss_criterion
        self.eval_criterion = eval_criterion
        self.loaders = loaders
        self.max_num_epochs = max_num_epochs
        self.validate_after_iters = validate_after_iters
        self.num_iterations = 0

    def fit(self):
        for _ in range(self.max_num_epochs):
            self.train()

    def train(self):
        self.model.train()
        for input, target in self.loaders["train"]:
            output, loss = self._forward_pass(input, target)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.num_iterations += 1
            if self.num_iterations % self.validate_after_iters == 0:
                print("val score", self.validate())

    def validate(self):
        scores = []
        with torch.no_grad():
            for input, target in self.loaders["val"]:
                output, loss = self._forward_pass(input, target)
                scores.append(self.eval_criterion(output, target).item())
        return sum(scores) / max(len(scores), 1)

    def _forward_pass(self, input, target):
        output = self.model(input)
        return output, self.loss_criterion(output, target)
