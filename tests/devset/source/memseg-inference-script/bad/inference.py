# Shape of the bug in https://github.com/tootouch/MemSeg/issues/21 (evalguard's own words):
# the inference notebook (here as a script) loads the whole trained model with torch.load and
# predicts anomaly masks without model.eval(); its output differed from the test script's.
import torch

model = torch.load("saved_model/best_model.pt", weights_only=False)  # evalguard: ignore[EG903]


def predict(model, image):
    with torch.no_grad():
        return torch.softmax(model(image), dim=1)[:, 1]


for image in []:
    print(predict(model, image).max())
