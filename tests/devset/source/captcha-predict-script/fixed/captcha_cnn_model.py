# Shape of dee1024/pytorch-captcha-recognition#6, in evalguard's own words: the predict script
# runs the CNN (BatchNorm + Dropout) in training mode, so one picture gets different answers.
import torch.nn as nn


class CNN(nn.Module):
    def __init__(self, n_out=144):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.Dropout(0.5),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Sequential(nn.Linear(32 * 30 * 80, 1024), nn.Dropout(0.5), nn.ReLU())
        self.rfc = nn.Linear(1024, n_out)

    def forward(self, x):
        out = self.layer1(x)
        return self.rfc(self.fc(out.view(out.size(0), -1)))
