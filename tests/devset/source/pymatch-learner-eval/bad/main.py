import torch
from torch import nn

from pymatch.learner import Learner

net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.Linear(16, 2))
learner = Learner(net, torch.optim.SGD(net.parameters(), lr=0.1), nn.CrossEntropyLoss())
learner.fit([(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))])
print(learner.predict([torch.randn(8, 4)]))
