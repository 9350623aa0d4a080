# Devset (evalguard): bug shape from sinhasam/vaal issue #2 ("I do not observe the task_model in eval
# mode" in Solver.test): the model arrives as a parameter, the test loop has no .eval(). Written anew.
import copy

import torch
import torch.optim as optim


class Solver:
    def __init__(self, args, test_loader):
        self.args = args
        self.test_loader = test_loader
        self.ce_loss = torch.nn.CrossEntropyLoss()

    def train(self, loader, task_model):
        optimizer = optim.SGD(task_model.parameters(), lr=0.01, momentum=0.9)
        task_model.train()
        best_acc, best_model = 0, task_model
        for step, (images, labels) in enumerate(loader):
            loss = self.ce_loss(task_model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 1000 == 0:
                best_model = copy.deepcopy(task_model)
        return self.test(best_model)

    def test(self, task_model):
        total, correct = 0, 0
        for images, labels in self.test_loader:
            with torch.no_grad():
                preds = task_model(images)
            correct += (preds.argmax(dim=1) == labels).sum().item()
            total += images.size(0)
        return correct / total * 100
