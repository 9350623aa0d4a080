import torch
import torch.nn as nn

from pyblaze.nn.engine.mle import MLEEngine

model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 3))
engine = MLEEngine(model)
train = [(torch.randn(32, 20), torch.randint(0, 3, (32,))) for _ in range(10)]
engine.train(train, torch.optim.Adam(model.parameters()), epochs=2)
print(engine.predict([torch.randn(8, 20)]).argmax(-1))
