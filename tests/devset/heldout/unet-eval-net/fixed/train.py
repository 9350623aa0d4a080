import torch
import torch.nn as nn
import torch.optim as optim

from eval import eval_net
from unet import UNet


def train_net(net, train, val, epochs=5, lr=0.1, gpu=False):
    optimizer = optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    criterion = nn.BCELoss()
    for epoch in range(epochs):
        net.train()
        for img, mask in train:
            loss = criterion(net(torch.from_numpy(img).unsqueeze(0)).view(-1),
                             torch.from_numpy(mask).view(-1).float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print("validation dice", eval_net(net, val, gpu))


if __name__ == "__main__":
    train_net(UNet(n_channels=3, n_classes=1), train=[], val=[])
