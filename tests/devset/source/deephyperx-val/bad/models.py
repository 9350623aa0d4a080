# Devset (evalguard): bug shape from nshaud/DeepHyperX issue #51 ("why dont use model.eval() in the
# val function?"): train() calls val() on the network it is training, and val() never switches it to
# eval mode. Written anew for evalguard.
import numpy as np
import torch


def train(net, optimizer, criterion, data_loader, epochs, val_loader=None):
    for e in range(1, epochs + 1):
        net.train()
        for data, target in data_loader:
            optimizer.zero_grad()
            loss = criterion(net(data), target)
            loss.backward()
            optimizer.step()
        if val_loader is not None:
            print("validation accuracy", val(net, val_loader))


def val(net, data_loader, device="cpu"):
    accuracy, total = 0.0, 0.0
    for data, target in data_loader:
        with torch.no_grad():
            output = net(data.to(device))
        _, output = torch.max(output, dim=1)
        accuracy += np.sum((output == target).numpy())
        total += target.numel()
    return accuracy / total
