# Devset (evalguard): bug shape from yanx27/GACNet issue #8 ("model.train is used reasonably, but
# model.eval is not used in part of the test code"): test_seg() evaluates the network that the
# training loop just switched to train(). Written anew for evalguard.
import torch
import torch.nn.functional as F


def test_seg(model, loader, num_classes=13):
    hits = torch.zeros(num_classes)
    for points, target in loader:
        pred = model(points)
        hits += torch.bincount(pred.argmax(-1)[pred.argmax(-1) == target], minlength=num_classes)
    return hits


def main(model, dataloader, testdataloader, epochs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(epochs):
        for points, target in dataloader:
            model = model.train()
            loss = F.nll_loss(model(points), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(epoch, test_seg(model, testdataloader))
