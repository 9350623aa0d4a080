# Devset (evalguard): shape of fxia22/pointnet.pytorch, pointnet/model.py -- a classifier whose name
# does not say "model"; it is an nn.Module through its base and holds BatchNorm and Dropout.
import torch.nn as nn
import torch.nn.functional as F


class PointNetCls(nn.Module):
    def __init__(self, k=2):
        super().__init__()
        self.fc1 = nn.Linear(1024, 256)
        self.bn1 = nn.BatchNorm1d(256)
        self.drop = nn.Dropout(p=0.3)
        self.fc2 = nn.Linear(256, k)

    def forward(self, x):
        x = F.relu(self.bn1(self.fc1(x.max(dim=2)[0])))
        return F.log_softmax(self.fc2(self.drop(x)), dim=1), None
