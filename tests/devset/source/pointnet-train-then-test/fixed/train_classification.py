# Devset (evalguard): bug shape from fxia22/pointnet.pytorch PR #19 ("sets model to eval mode
# (required due to batchnorm layer)"): the training loop calls classifier.train(), and every tenth
# batch evaluates on a test batch without switching to eval mode. Written anew for evalguard.
import torch
import torch.nn.functional as F
import torch.optim as optim

from pointnet.model import PointNetCls

train_loader = torch.utils.data.DataLoader(range(8))
test_loader = torch.utils.data.DataLoader(range(8))

classifier = PointNetCls(k=16)
optimizer = optim.SGD(classifier.parameters(), lr=0.01, momentum=0.9)

for epoch in range(25):
    for i, (points, target) in enumerate(train_loader):
        optimizer.zero_grad()
        classifier = classifier.train()
        pred, _ = classifier(points)
        loss = F.nll_loss(pred, target)
        loss.backward()
        optimizer.step()
        if i % 10 == 0:
            _, (points, target) = next(enumerate(test_loader))
            classifier = classifier.eval()
            pred, _ = classifier(points)
            print("test loss", F.nll_loss(pred, target).item())
