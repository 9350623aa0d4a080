# Shape of the bug in https://github.com/fuweifuvtoo/Semantic-segmentation/issues/13 (evalguard's
# own words): the prediction script builds a segmentation network from an installed package,
# loads the trained weights and predicts without model.eval(); BatchNorm normalises each image
# with its own statistics.
import sys

import numpy as np
import torch
from segmentation_zoo import DeepLabV3Plus

model = DeepLabV3Plus(num_classes=6)
model.load_state_dict(torch.load(sys.argv[1], map_location="cpu", weights_only=True))
model.eval()

with torch.no_grad():
    image = torch.from_numpy(np.load(sys.argv[2])).unsqueeze(0)
    mask = model(image).argmax(1)
np.save("mask.npy", mask.numpy())
