# Devset (evalguard): bug shape from cvlab-stonybrook/DM-Count issue #3 ("you should add
# model.eval() in test.py ... if batch normalization is enabled it will definitely affect the
# result"): the model comes from the in-repo factory and runs under no_grad only. Written anew.
import torch

from models import vgg19

dataloader = torch.utils.data.DataLoader(range(4))
model = vgg19()
model.load_state_dict(torch.load("best_model.pth", map_location="cpu", weights_only=True))
errors = []
for inputs, count, name in dataloader:
    with torch.no_grad():
        outputs = model(inputs)
    errors.append(count[0].item() - torch.sum(outputs).item())
print(sum(abs(e) for e in errors) / len(errors))
