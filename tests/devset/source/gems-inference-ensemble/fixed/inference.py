# Shape of camlab-ethz/GEMS#13, in evalguard's own words: the inference script loads each trained
# ensemble member and predicts affinities with it without model.eval().
import sys

import torch

from utils import predict_affinities

dataset = torch.load(sys.argv[1], weights_only=True)
predictions = []
for path in sys.argv[2:]:
    model = torch.jit.load(path, map_location="cpu")
    model.eval()
    predictions.append(predict_affinities(model, dataset))
print(torch.stack(predictions).mean(0))
