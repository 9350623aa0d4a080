# Devset (evalguard): bug shape from as791/ZOO_Attack_PyTorch PR #10 ("Use eval mode during
# validation", closes #7): the classifier trained in this script is validated without eval() between
# epochs. Shape taken from the PR description; written anew for evalguard.
import torch
import torch.nn as nn


class MNISTClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 13 * 13, 200), nn.ReLU(),
                                        nn.Dropout(0.5), nn.Linear(200, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def validate(model, val_loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in val_loader:
            correct += (model(data).argmax(1) == target).sum().item()
    return correct / len(val_loader.dataset)


def main(train_loader, val_loader):
    model = MNISTClassifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for epoch in range(50):
        model.train()
        for data, target in train_loader:
            loss = nn.functional.cross_entropy(model(data), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(epoch, validate(model, val_loader))
